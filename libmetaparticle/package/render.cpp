#include "package/render.h"

#include <sys/resource.h>

#include <cstdio>
#include <tuple>
#include <utility>

#include "package/kubernetes.h"

namespace mp::package {

std::string replica_name(const Options &o, int index) { return o.name + "-" + std::to_string(index); }

json::Ptr docker_create_body(const Options &o, int index, const std::string &image) {
    auto b = json::object();
    json::set_string(b.get(), "Image", image);
    // The hostname is the replica's name, as a pod's is its name: stable
    // across restarts and readable in logs.
    json::set_string(b.get(), "Hostname", replica_name(o, index));
    cJSON *labels = json::ensure_object(b.get(), "Labels");
    json::set_string(labels, kLabelName, o.name);
    json::set_string(labels, kLabelReplica, std::to_string(index));
    json::set_string(labels, kLabelImage, o.image_reference());
    json::set_bool(b.get(), "Tty", false);
    json::set_bool(b.get(), "OpenStdin", false);
    json::set_bool(b.get(), "AttachStdout", false);
    json::set_bool(b.get(), "AttachStderr", false);
    cJSON *host = json::ensure_object(b.get(), "HostConfig");
    // The host's own limits, stated explicitly: stock Podman otherwise asks
    // the runtime for its default (nofile 1048576), which fails with
    // "error setting rlimit type 7: operation not permitted" wherever the
    // hard limit is lower. A replica gets what a process started here gets.
    // Capped at the kernel's own ceilings (fs.nr_open, kernel.pid_max):
    // Podman lowers its processes' nproc to pid_max, and the runtime it
    // starts cannot raise a hard limit.
    auto ulimits = json::array();
    for (auto [name, resource, ceiling_file] :
         {std::tuple<const char *, int, const char *>{"nofile", RLIMIT_NOFILE, "/proc/sys/fs/nr_open"},
          {"nproc", RLIMIT_NPROC, "/proc/sys/kernel/pid_max"}}) {
        struct rlimit rl;
        if (::getrlimit(resource, &rl) != 0) continue;
        rlim_t ceiling = RLIM_INFINITY;
        if (FILE *f = std::fopen(ceiling_file, "r")) {
            unsigned long long v = 0;
            if (std::fscanf(f, "%llu", &v) == 1 && v > 0) ceiling = static_cast<rlim_t>(v);
            std::fclose(f);
        }
        if (rl.rlim_max > ceiling) rl.rlim_max = ceiling;
        if (rl.rlim_cur > rl.rlim_max) rl.rlim_cur = rl.rlim_max;
        // Engines take int64; -1 means unlimited.
        auto value = [](rlim_t v) { return v == RLIM_INFINITY ? int64_t{-1} : static_cast<int64_t>(v); };
        auto u = json::object();
        json::set_string(u.get(), "Name", name);
        json::set_int(u.get(), "Soft", value(rl.rlim_cur));
        json::set_int(u.get(), "Hard", value(rl.rlim_max));
        cJSON_AddItemToArray(ulimits.get(), u.release());
    }
    json::set(host, "Ulimits", std::move(ulimits));
    if (!o.ports.empty()) {
        cJSON *exposed = json::ensure_object(b.get(), "ExposedPorts");
        cJSON *bindings = json::ensure_object(host, "PortBindings");
        for (int p : o.ports) {
            std::string key = std::to_string(p) + "/tcp";
            json::set(exposed, key.c_str(), json::object());
            int host_port = p + index;
            auto binding = json::object();
            json::set_string(binding.get(), "HostIp", o.is_public ? "0.0.0.0" : "127.0.0.1");
            json::set_string(binding.get(), "HostPort", host_port <= 65535 ? std::to_string(host_port) : "");
            auto list = json::array();
            cJSON_AddItemToArray(list.get(), binding.release());
            json::set(bindings, key.c_str(), std::move(list));
        }
    }
    return b;
}

json::Ptr render_docker(const Options &o, const std::string &image) {
    auto arr = json::array();
    for (int i = 0; i < o.instance_count(); ++i) {
        auto item = json::object();
        json::set_string(item.get(), "name", replica_name(o, i));
        json::set(item.get(), "body", docker_create_body(o, i, image));
        cJSON_AddItemToArray(arr.get(), item.release());
    }
    return arr;
}

json::Ptr render_all(const Options &o, const Image &image) {
    auto out = json::object();
    cJSON *img = json::ensure_object(out.get(), "image");
    json::set_string(img, "reference", image.reference);
    json::set_string(img, "digest", image.manifest.digest);
    json::set(img, "config", json::parse(image.config.data));
    json::set(img, "manifest", json::parse(image.manifest.data));
    json::set(out.get(), "docker", render_docker(o, image.reference));
    json::set(out.get(), "kubernetes", render_kubernetes_objects(o, kubernetes_image(image)));
    return out;
}

}  // namespace mp::package
