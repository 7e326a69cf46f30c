// libFuzzer target: the kubeconfig reader (libmetaparticle/kube/config.cpp)
// and the YAML -> JSON conversion under it (kube/yaml.cpp). The input is the
// whole kubeconfig file. Any mp::Error is a proper rejection; anything else
// escaping, a crash, a leak or undefined behaviour is a finding.
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/error.h"
#include "kube/config.h"
#include "kube/yaml.h"

namespace {

// A private directory, so that relative file references in the fuzzed
// kubeconfig (certificate-authority: ca.crt) resolve to nothing there.
const std::string &config_path() {
    static const std::string path = [] {
        char dir[] = "/tmp/mp-fuzz-kubeconfig-XXXXXX";
        if (!mkdtemp(dir)) {
            std::perror("mkdtemp");
            std::abort();
        }
        return std::string(dir) + "/config";
    }();
    return path;
}

void write_file(const std::string &path, const uint8_t *data, size_t size) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        std::perror(path.c_str());
        std::abort();
    }
    while (size > 0) {
        ssize_t n = ::write(fd, data, size);
        if (n <= 0) {
            std::perror("write");
            std::abort();
        }
        data += n;
        size -= static_cast<size_t>(n);
    }
    ::close(fd);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const std::string text(reinterpret_cast<const char *>(data), size);
    try {
        mp::kube::yaml_to_json_all(text, "fuzz input");
    } catch (const mp::Error &) {
    }

    write_file(config_path(), data, size);
    mp::kube::LoadOptions opts;
    opts.serviceaccount_dir = "/nonexistent/mp-fuzz-serviceaccount";  // no pod namespace file
    try {
        mp::kube::Config cfg = mp::kube::load_kubeconfig(config_path(), opts);
        // A loaded configuration must name a server and a namespace.
        if (cfg.server.empty() || cfg.namespace_.empty()) {
            std::fprintf(stderr, "load_kubeconfig accepted a config without server or namespace\n");
            std::abort();
        }
    } catch (const mp::Error &) {
    }
    return 0;
}
