// mp-image: build an OCI image of any executable with containerize's image
// builder (the executable, its ELF shared-library closure and interpreter,
// nothing else; no Dockerfile, no daemon) and push it to a registry.
//
//   mp-image --repository REGISTRY/PATH [--name NAME] [--tag TAG]
//            [--include PATH]... [--env KEY=VALUE]... [--port N]... [--quiet]
//            [--options FILE] -- EXECUTABLE [ARG...]
//
// The image's ENTRYPOINT is EXECUTABLE [ARG...] (at its host path). Prints
// REGISTRY/PATH/NAME:TAG@sha256:... on stdout when pushed. Used to build the
// mp-sidecar image (deploy/build-sidecar-image.sh).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/error.h"
#include "json/json.h"
#include "package/image.h"
#include "package/options.h"
#include "package/progress.h"
#include "package/registry.h"

using namespace mp::package;

int main(int argc, char **argv) {
    CLI::App app{"Build an OCI image of an executable and its shared-library closure, and push it to a registry."};
    std::string repository, name, tag = "latest";
    std::vector<std::string> include, env, command;
    std::vector<int> ports;
    bool quiet = false;
    std::string options_file;
    app.add_option("--options", options_file,
                   "a file of containerize options (JSON) to start from; the other flags override it")
        ->check(CLI::ExistingFile);
    app.add_option("--repository", repository, "registry and path to push to, e.g. 127.0.0.1:5000/metaparticle")->required();
    app.add_option("--name", name, "image name (default: the executable's name)");
    app.add_option("--tag", tag, "image tag")->capture_default_str();
    app.add_option("--include", include, "another host path to copy at the same path (e.g. a plugin the program dlopens)");
    app.add_option("--env", env, "KEY=VALUE set in the image");
    app.add_option("--port", ports, "a port the program listens on (ExposedPorts)");
    app.add_flag("--quiet,-q", quiet, "print only the pushed reference");
    app.add_option("command", command, "the executable (and arguments) the image runs (default: --options' \"command\")");
    CLI11_PARSE(app, argc, argv);

    try {
        mp::json::Ptr o = mp::json::object();
        if (!options_file.empty()) {
            std::ifstream in(options_file);
            std::stringstream text;
            text << in.rdbuf();
            o = mp::json::parse(text.str());
            if (!cJSON_IsObject(o.get())) {
                std::fprintf(stderr, "mp-image: %s does not hold a JSON object\n", options_file.c_str());
                return 2;
            }
            for (const char *k : {"runner", "dryRun", "keepRunning"}) cJSON_DeleteItemFromObject(o.get(), k);
        }
        if (command.empty()) {
            for (const cJSON *c = cJSON_GetObjectItem(o.get(), "command") ? cJSON_GetObjectItem(o.get(), "command")->child : nullptr;
                 c; c = c->next)
                if (cJSON_IsString(c)) command.push_back(c->valuestring);
            if (command.empty()) {
                std::fprintf(stderr, "mp-image: give the executable to put in the image (after --)\n");
                return 2;
            }
        }
        if (!name.empty()) mp::json::set_string(o.get(), "name", name);
        else if (!cJSON_GetObjectItem(o.get(), "name")) mp::json::set_string(o.get(), "name", sanitize_name(command[0].substr(command[0].rfind('/') + 1)));
        mp::json::set_string(o.get(), "repository", repository);
        mp::json::set_string(o.get(), "tag", tag);
        mp::json::set_bool(o.get(), "publish", true);
        mp::json::set_bool(o.get(), "quiet", quiet);
        auto strings = [](const std::vector<std::string> &v) {
            auto a = mp::json::array();
            for (const auto &s : v) cJSON_AddItemToArray(a.get(), cJSON_CreateString(s.c_str()));
            return a;
        };
        mp::json::set(o.get(), "command", strings(command));
        if (!include.empty()) {
            auto all = strings(include);
            if (const cJSON *given = cJSON_GetObjectItem(o.get(), "include"))
                for (const cJSON *c = given->child; c; c = c->next) cJSON_AddItemToArray(all.get(), cJSON_Duplicate(c, 1));
            mp::json::set(o.get(), "include", std::move(all));
        }
        if (!ports.empty()) {
            auto a = mp::json::array();
            for (int p : ports) cJSON_AddItemToArray(a.get(), cJSON_CreateNumber(p));
            mp::json::set(o.get(), "ports", std::move(a));
        }
        if (!env.empty()) {
            auto e = mp::json::object();
            for (const auto &kv : env) {
                auto eq = kv.find('=');
                if (eq == std::string::npos || eq == 0) {
                    std::fprintf(stderr, "mp-image: --env %s: expected KEY=VALUE\n", kv.c_str());
                    return 2;
                }
                mp::json::set_string(e.get(), kv.substr(0, eq).c_str(), kv.substr(eq + 1));
            }
            mp::json::set(o.get(), "env", std::move(e));
        }
        Options opts = parse_options(mp::json::print(o.get()));

        ProgressPrinter progress(::isatty(STDERR_FILENO) == 1, "mp-image: ");
        auto log = [&](const std::string &m) {
            if (quiet) return;
            progress.clear();
            std::fprintf(stderr, "mp-image: %s\n", m.c_str());
        };
        BuildSettings s;
        s.log = log;
        if (!quiet) s.progress = progress.fn();
        s.cache_dir = default_layer_cache_dir();
        Image img = build_image(opts, s);
        for (const auto &w : img.warnings) log("warning: " + w);
        PushResult r = push_image(img, log, quiet ? ProgressFn{} : progress.fn());
        std::printf("%s@%s\n", img.reference.c_str(), r.manifest_digest.c_str());
        return 0;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "mp-image: %s\n", e.what());
        return 1;
    }
}
