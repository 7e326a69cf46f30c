#include "package/options.h"

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "common/error.h"
#include "common/names.h"
#include "json/json.h"

namespace mp::package {
namespace {

[[noreturn]] void invalid(const std::string &msg) { throw Error(MP_EINVAL, "containerize options: " + msg); }

std::string type_name(const cJSON *v) {
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "an invalid value";
}

std::string as_string(const cJSON *v, const std::string &what) {
    if (!cJSON_IsString(v) || !v->valuestring) invalid("\"" + what + "\" must be a string, not " + type_name(v));
    return v->valuestring;
}

bool as_bool(const cJSON *v, const std::string &what) {
    if (!cJSON_IsBool(v)) invalid("\"" + what + "\" must be true or false, not " + type_name(v));
    return cJSON_IsTrue(v) != 0;
}

int64_t as_int(const cJSON *v, const std::string &what, int64_t min, int64_t max) {
    std::string range = "an integer from " + std::to_string(min) + " to " + std::to_string(max);
    if (!cJSON_IsNumber(v)) invalid("\"" + what + "\" must be " + range + ", not " + type_name(v));
    double d = v->valuedouble;
    if (d != static_cast<double>(static_cast<int64_t>(d)) || d < static_cast<double>(min) ||
        d > static_cast<double>(max)) {
        std::ostringstream os;
        os << d;
        invalid("\"" + what + "\" must be " + range + ", not " + os.str());
    }
    return static_cast<int64_t>(d);
}

const cJSON *as_array(const cJSON *v, const std::string &what, const char *of) {
    if (!cJSON_IsArray(v)) invalid("\"" + what + "\" must be an array of " + of + ", not " + type_name(v));
    return v;
}

const cJSON *as_object(const cJSON *v, const std::string &what, const char *expect) {
    if (!cJSON_IsObject(v)) invalid("\"" + what + "\" must be " + expect + ", not " + type_name(v));
    return v;
}

std::string absolute_path(const cJSON *v, const std::string &what) {
    std::string s = as_string(v, what);
    if (s.empty() || s[0] != '/') invalid("\"" + what + "\" must be an absolute path (starting with '/'), not \"" + s + "\"");
    if (s.find('\0') != std::string::npos) invalid("\"" + what + "\" contains a NUL character");
    return s;
}

// Docker reference grammar, kept simple: optional "host[:port]/" then
// lowercase path components separated by '/', each [a-z0-9] runs joined by
// '.', '_', '__' or '-' runs.
std::string validate_repository(const std::string &repo) {
    if (repo.empty()) return "must not be empty";
    if (repo.back() == '/') return "must not end with '/'";
    std::vector<std::string> parts;
    size_t start = 0;
    while (true) {
        size_t slash = repo.find('/', start);
        parts.push_back(repo.substr(start, slash == std::string::npos ? std::string::npos : slash - start));
        if (slash == std::string::npos) break;
        start = slash + 1;
    }
    for (size_t i = 0; i < parts.size(); ++i) {
        const std::string &p = parts[i];
        if (p.empty()) return "has an empty path component ('//')";
        bool host = i == 0 && parts.size() > 1 &&
                    (p.find('.') != std::string::npos || p.find(':') != std::string::npos || p == "localhost");
        for (char c : p) {
            bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
            if (host) ok = ok || (c >= 'A' && c <= 'Z') || c == ':' || c == '[' || c == ']';
            if (!ok)
                return std::string("contains '") + c + "'; path components may use only lowercase letters, digits, '.', '_' and '-'";
        }
        if (!host) {
            auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
            if (!alnum(p.front()) || !alnum(p.back())) return "component \"" + p + "\" must start and end with a lowercase letter or digit";
        }
    }
    return "";
}

bool valid_tag(const std::string &t) {
    if (t.empty() || t.size() > 128) return false;
    auto ok = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-'; };
    if (!(std::isalnum(static_cast<unsigned char>(t[0])) || t[0] == '_')) return false;
    return std::all_of(t.begin(), t.end(), ok);
}

bool valid_env_name(const std::string &k) {
    if (k.empty()) return false;
    return std::none_of(k.begin(), k.end(), [](char c) { return c == '=' || c == '\0'; });
}

std::string read_file(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream os;
    os << in.rdbuf();
    return os.str();
}

void check_keys(const cJSON *obj, const std::string &prefix, std::initializer_list<const char *> known) {
    for (const cJSON *it = obj->child; it; it = it->next) {
        std::string key = it->string ? it->string : "";
        bool found = std::any_of(known.begin(), known.end(), [&](const char *k) { return key == k; });
        if (!found) {
            std::string list;
            for (const char *k : known) list += std::string(list.empty() ? "" : ", ") + k;
            invalid("unknown option \"" + prefix + key + "\" (known: " + list + ")");
        }
    }
}

}  // namespace

std::string Options::image_reference() const {
    return (repository.empty() ? "" : repository + "/") + name + ":" + tag;
}

int Options::instance_count() const {
    if (job_count) return *job_count;
    if (shards) return *shards;
    return replicas;
}

std::string sanitize_name(const std::string &raw) {
    std::string out;
    for (char c : raw) {
        char l = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        bool ok = (l >= 'a' && l <= 'z') || (l >= '0' && l <= '9');
        if (ok) out += l;
        else if (!out.empty() && out.back() != '-') out += '-';
    }
    while (!out.empty() && out.back() == '-') out.pop_back();
    if (out.empty()) return "app";
    if (!(out[0] >= 'a' && out[0] <= 'z')) out = "app-" + out;
    if (out.size() > 63) out.resize(63);
    while (out.back() == '-') out.pop_back();
    return out;
}

std::string validate_name(const std::string &name) {
    if (name.empty()) return "must not be empty";
    if (name.size() > 63) return "must be at most 63 characters (it names containers, a Kubernetes Service and DNS labels)";
    if (!(name[0] >= 'a' && name[0] <= 'z')) return "must start with a lowercase letter";
    for (char c : name)
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return "may contain only lowercase letters, digits and '-' (a DNS label), not '" + std::string(1, c) + "'";
    if (name.back() == '-') return "must end with a lowercase letter or digit";
    return "";
}

std::string validate_namespace(const std::string &ns) {
    if (ns.empty()) return "must not be empty (leave it out for the default namespace)";
    if (ns.size() > 63) return "must be at most 63 characters";
    for (char c : ns)
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return "may contain only lowercase letters, digits and '-' (a Kubernetes namespace), not '" + std::string(1, c) + "'";
    if (ns.front() == '-' || ns.back() == '-') return "must start and end with a lowercase letter or digit";
    return "";
}

std::vector<std::string> self_command() {
    char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) throw Error(MP_ERROR, "cannot read /proc/self/exe to find this program; pass \"command\" explicitly");
    std::string exe(buf, static_cast<size_t>(n));
    const std::string deleted = " (deleted)";
    if (exe.size() > deleted.size() && exe.compare(exe.size() - deleted.size(), deleted.size(), deleted) == 0)
        throw Error(MP_ERROR, "this program's executable " + exe.substr(0, exe.size() - deleted.size()) +
                                  " was deleted or replaced while it runs; run the new build again");
    std::vector<std::string> argv{exe};
    std::string cmdline = read_file("/proc/self/cmdline");
    size_t pos = 0;
    bool first = true;
    while (pos < cmdline.size()) {
        size_t end = cmdline.find('\0', pos);
        if (end == std::string::npos) end = cmdline.size();
        if (!first) argv.push_back(cmdline.substr(pos, end - pos));
        first = false;
        pos = end + 1;
    }
    return argv;
}

Options parse_options(const std::string &text) {
    Options o;
    json::Ptr root;
    bool empty = std::all_of(text.begin(), text.end(), [](char c) { return std::isspace(static_cast<unsigned char>(c)); });
    if (!empty) {
        root = json::parse(text);
        if (!root) invalid("not valid JSON: " + (text.size() > 200 ? text.substr(0, 200) + "..." : text));
        if (!cJSON_IsObject(root.get())) invalid("must be a JSON object, not " + type_name(root.get()));
        check_keys(root.get(), "",
                   {"name", "repository", "tag", "ports", "replicas", "runner", "publish", "public", "shardSpec",
                    "jobSpec", "namespace", "env", "files", "baseImage", "dryRun", "keepRunning", "quiet", "command",
                    "include", "workingDir", "imagePullSecrets"});
    }
    const cJSON *r = root.get();
    auto item = [&](const char *key) -> const cJSON * {
        if (!r) return nullptr;
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(r, key);
        // JSON null means "not set": bindings map their None/undefined to it.
        return cJSON_IsNull(v) ? nullptr : v;
    };

    if (auto v = item("command")) {
        as_array(v, "command", "strings");
        int i = 0;
        for (const cJSON *e = v->child; e; e = e->next, ++i)
            o.command.push_back(as_string(e, "command[" + std::to_string(i) + "]"));
        if (o.command.empty()) invalid("\"command\" must not be empty");
        if (o.command[0].empty() || o.command[0][0] != '/')
            invalid("\"command[0]\" must be an absolute path (what the container executes), not \"" + o.command[0] + "\"");
    } else {
        o.command = self_command();
    }

    if (auto v = item("name")) {
        o.name = as_string(v, "name");
        std::string why = validate_name(o.name);
        if (!why.empty()) invalid("\"name\" \"" + o.name + "\" " + why);
    } else {
        std::string base = o.command[0].substr(o.command[0].rfind('/') + 1);
        o.name = sanitize_name(base);
    }
    if (auto v = item("repository")) {
        o.repository = as_string(v, "repository");
        while (!o.repository.empty() && o.repository.back() == '/') o.repository.pop_back();
        std::string why = validate_repository(o.repository);
        if (!why.empty()) invalid("\"repository\" \"" + o.repository + "\" " + why + " (expected e.g. \"docker.io/user\" or \"127.0.0.1:5000/team\")");
    }
    if (auto v = item("tag")) {
        o.tag = as_string(v, "tag");
        if (!valid_tag(o.tag))
            invalid("\"tag\" \"" + o.tag + "\" is not a valid image tag (letters, digits, '_', '.', '-'; at most 128; not starting with '.' or '-')");
    }
    if (auto v = item("ports")) {
        as_array(v, "ports", "port numbers");
        std::set<int> seen;
        int i = 0;
        for (const cJSON *e = v->child; e; e = e->next, ++i) {
            int p = static_cast<int>(as_int(e, "ports[" + std::to_string(i) + "]", 1, 65535));
            if (!seen.insert(p).second) invalid("\"ports\" lists " + std::to_string(p) + " twice");
            o.ports.push_back(p);
        }
    }
    if (auto v = item("replicas")) o.replicas = static_cast<int>(as_int(v, "replicas", 1, 1000));
    if (auto v = item("runner")) {
        std::string s = as_string(v, "runner");
        if (s == "docker") o.runner = Runner::Docker;
        else if (s == "metaparticle" || s == "kubernetes") o.runner = Runner::Kubernetes;
        else invalid("\"runner\" must be \"docker\", \"metaparticle\" or \"kubernetes\", not \"" + s + "\"");
    }
    if (auto v = item("publish")) o.publish = as_bool(v, "publish");
    if (auto v = item("public")) o.is_public = as_bool(v, "public");
    if (auto v = item("shardSpec")) {
        as_object(v, "shardSpec", "an object {\"shards\": N, \"urlPattern\": \"...\"}");
        check_keys(v, "shardSpec.", {"shards", "urlPattern"});
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(v, "shards");
        if (!s) invalid("\"shardSpec.shards\" is required (the number of shards)");
        o.shards = static_cast<int>(as_int(s, "shardSpec.shards", 1, 1000));
        if (const cJSON *u = cJSON_GetObjectItemCaseSensitive(v, "urlPattern"))
            o.shard_url_pattern = as_string(u, "shardSpec.urlPattern");
    }
    if (auto v = item("jobSpec")) {
        as_object(v, "jobSpec", "an object {\"count\": N}");
        check_keys(v, "jobSpec.", {"count"});
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "count");
        if (!c) invalid("\"jobSpec.count\" is required (how many times the job runs)");
        o.job_count = static_cast<int>(as_int(c, "jobSpec.count", 1, 1000));
    }
    if (o.shards && o.job_count) invalid("\"shardSpec\" and \"jobSpec\" cannot be combined: a program is either a sharded service or a job");
    if (auto v = item("namespace")) {
        o.ns = as_string(v, "namespace");
        std::string why = validate_namespace(o.ns);
        if (!why.empty()) invalid("\"namespace\" \"" + o.ns + "\" " + why);
    }
    if (auto v = item("imagePullSecrets")) {
        as_array(v, "imagePullSecrets", "names of Secrets of type kubernetes.io/dockerconfigjson in the namespace");
        int i = 0;
        for (const cJSON *e = v->child; e; e = e->next, ++i) {
            std::string what = "imagePullSecrets[" + std::to_string(i) + "]";
            std::string secret = as_string(e, what.c_str());
            // Secret names are RFC 1123 subdomains, the rule lock names follow too.
            std::string why = validate_lock_name(secret);
            if (!why.empty()) invalid("\"" + what + "\" \"" + secret + "\" is not a Secret name: " + why);
            o.image_pull_secrets.push_back(secret);
        }
    }
    if (auto v = item("env")) {
        as_object(v, "env", "an object of string values, e.g. {\"LOG_LEVEL\": \"debug\"}");
        for (const cJSON *e = v->child; e; e = e->next) {
            std::string k = e->string ? e->string : "";
            if (!valid_env_name(k)) invalid("\"env\" has an invalid variable name \"" + k + "\" (empty or containing '=')");
            if (k == "METAPARTICLE_IN_CONTAINER")
                invalid("\"env.METAPARTICLE_IN_CONTAINER\" is set by containerize itself (to true, in the image); leave it out");
            o.env[k] = as_string(e, "env." + k);
        }
    }
    if (auto v = item("files")) {
        as_array(v, "files", "objects {\"src\": \"host path\", \"dest\": \"image path\"}");
        int i = 0;
        for (const cJSON *e = v->child; e; e = e->next, ++i) {
            std::string w = "files[" + std::to_string(i) + "]";
            as_object(e, w, "an object {\"src\": \"host path\", \"dest\": \"absolute image path\"}");
            check_keys(e, w + ".", {"src", "dest"});
            const cJSON *src = cJSON_GetObjectItemCaseSensitive(e, "src");
            const cJSON *dest = cJSON_GetObjectItemCaseSensitive(e, "dest");
            if (!src) invalid("\"" + w + ".src\" is required (the host file or directory to copy)");
            if (!dest) invalid("\"" + w + ".dest\" is required (where it goes in the image)");
            FileCopy f;
            f.src = as_string(src, w + ".src");
            if (f.src.empty()) invalid("\"" + w + ".src\" must not be empty");
            f.dest = absolute_path(dest, w + ".dest");
            o.files.push_back(std::move(f));
        }
    }
    if (auto v = item("baseImage")) {
        o.base_image = as_string(v, "baseImage");
        if (o.base_image.empty()) invalid("\"baseImage\" must not be empty (leave it out for an image built from scratch)");
    }
    if (auto v = item("dryRun")) o.dry_run = as_bool(v, "dryRun");
    if (auto v = item("keepRunning")) o.keep_running = as_bool(v, "keepRunning");
    if (auto v = item("quiet")) o.quiet = as_bool(v, "quiet");
    if (auto v = item("include")) {
        as_array(v, "include", "absolute host paths");
        int i = 0;
        for (const cJSON *e = v->child; e; e = e->next, ++i)
            o.include.push_back(absolute_path(e, "include[" + std::to_string(i) + "]"));
    }
    if (auto v = item("workingDir")) {
        o.working_dir = absolute_path(v, "workingDir");
        o.working_dir_set = true;
    }

    if (o.publish && o.repository.empty())
        invalid("\"publish\": true needs \"repository\" (where to push, e.g. \"docker.io/<user>\" or \"127.0.0.1:5000\")");
    return o;
}

}  // namespace mp::package
