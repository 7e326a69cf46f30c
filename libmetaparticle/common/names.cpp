#include "common/names.h"

#include <unistd.h>

#include <cstdlib>

namespace mp {

std::string validate_lock_name(const std::string &name) {
    if (name.empty()) return "lock name is empty";
    if (name.size() > 253) return "lock name is longer than 253 characters";
    auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
    size_t label_start = 0;
    for (size_t i = 0; i <= name.size(); ++i) {
        if (i == name.size() || name[i] == '.') {
            if (i == label_start)
                return "lock name '" + name + "' has an empty label (leading, trailing or double '.')";
            if (!alnum(name[label_start]) || !alnum(name[i - 1]))
                return "lock name '" + name +
                       "' must start and end (and each '.'-separated part must start and end) "
                       "with a lowercase letter or digit";
            label_start = i + 1;
            continue;
        }
        char c = name[i];
        if (!alnum(c) && c != '-')
            return "lock name '" + name +
                   "' may contain only lowercase letters, digits, '-' and '.' (a Kubernetes object name)";
    }
    return "";
}

std::string default_identity() {
    char host[256] = {0};
    if (gethostname(host, sizeof host - 1) != 0 || !host[0]) std::snprintf(host, sizeof host, "unknown");
    return std::string(host) + "/" + std::to_string(static_cast<long>(getpid()));
}

std::string sidecar_url(const char *explicit_url) {
    std::string url;
    if (explicit_url && *explicit_url) {
        url = explicit_url;
    } else if (const char *env = std::getenv("METAPARTICLE_SIDECAR"); env && *env) {
        url = env;
    } else {
        url = "http://127.0.0.1:13131";
    }
    while (!url.empty() && url.back() == '/') url.pop_back();
    if (url.find("://") == std::string::npos) url = "http://" + url;
    return url;
}

}  // namespace mp
