// Internal error plumbing: a C++ exception type carrying an mp_error_code,
// and the thread-local "last error" behind mp_error_last().
#pragma once

#include <stdexcept>
#include <string>

#include "metaparticle.h"

namespace mp {

// Thrown inside the core; the C shim turns it into an int return code plus
// the thread-local message. Never crosses the C ABI.
class Error : public std::runtime_error {
public:
    Error(int code, const std::string &message) : std::runtime_error(message), code_(code) {}
    int code() const noexcept { return code_; }

private:
    int code_;
};

// Record a failure for mp_error_last() on this thread; returns `code`.
int set_last_error(int code, const std::string &message);
void clear_last_error();

// Runs `fn` and converts any exception into a return code + message.
template <typename Fn>
int guard(Fn &&fn) noexcept {
    try {
        fn();
        return MP_OK;
    } catch (const Error &e) {
        return set_last_error(e.code(), e.what());
    } catch (const std::bad_alloc &) {
        return set_last_error(MP_ENOMEM, "out of memory");
    } catch (const std::exception &e) {
        return set_last_error(MP_ERROR, e.what());
    } catch (...) {
        return set_last_error(MP_ERROR, "unknown internal error");
    }
}

}  // namespace mp
