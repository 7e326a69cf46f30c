// CHECK / CHECK_EQ for the small C++ unit-test programs (kube_unit_test,
// lock_service_test): a failed check prints where and what, is counted, and
// the program goes on to the next check; main() ends with
// `return mptest::check_report("name");`.
#pragma once

#include <cstdio>
#include <iostream>

namespace mptest {

inline int check_failures = 0;
inline int checks = 0;

// Prints the totals; the exit code: 0 when every check passed.
inline int check_report(const char *program) {
    std::printf("%s: %d checks, %d failed\n", program, checks, check_failures);
    return check_failures == 0 ? 0 : 1;
}

}  // namespace mptest

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        ++mptest::checks;                                                                 \
        if (!(cond)) {                                                                    \
            ++mptest::check_failures;                                                     \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                                 \
    } while (0)

#define CHECK_EQ(a, b)                                                                              \
    do {                                                                                            \
        ++mptest::checks;                                                                           \
        auto va = (a);                                                                              \
        auto vb = (b);                                                                              \
        if (!(va == vb)) {                                                                          \
            ++mptest::check_failures;                                                               \
            std::cerr << __FILE__ << ":" << __LINE__ << ": CHECK_EQ failed: " #a " == " #b "\n  got " \
                      << va << "\n  expected " << vb << "\n";                                      \
        }                                                                                           \
    } while (0)
