// The C ABI of Package: argument checking and translation of C++ results into
// MP_* codes. The logic lives in package/.
#include <cstdlib>
#include <cstring>

#include "common/error.h"
#include "package/containerize.h"

using mp::Error;
using mp::guard;

extern "C" {

int mp_in_container(int *inside) {
    return guard([&] {
        if (!inside) throw Error(MP_EINVAL, "inside is NULL");
        *inside = mp::package::in_container() ? 1 : 0;
    });
}

int mp_containerize(const char *options_json, mp_main_fn main_fn, void *user_data, int *exit_code) {
    return guard([&] {
        if (!main_fn) throw Error(MP_EINVAL, "main_fn is NULL");
        if (!exit_code) throw Error(MP_EINVAL, "exit_code is NULL");
        *exit_code = 0;
        // main_fn is a C function: it cannot throw, and a binding's callback
        // must catch its own language's exceptions and return a code.
        *exit_code = mp::package::containerize(options_json ? options_json : "",
                                               [&] { return main_fn(user_data); });
    });
}

int mp_containerize_render(const char *options_json, char **out_json) {
    return guard([&] {
        if (!out_json) throw Error(MP_EINVAL, "out_json is NULL");
        *out_json = nullptr;
        std::string s = mp::package::containerize_render(options_json ? options_json : "");
        char *p = static_cast<char *>(std::malloc(s.size() + 1));
        if (!p) throw std::bad_alloc();
        std::memcpy(p, s.c_str(), s.size() + 1);
        *out_json = p;
    });
}

}  // extern "C"
