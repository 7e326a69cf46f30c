// containerize(): the top of Package. Inside the container run main; outside
// build the image, publish it when asked, and hand it to the runner until
// Ctrl-C. See include/metaparticle.h for the user-facing contract.
#pragma once

#include <functional>
#include <string>

namespace mp::package {

// METAPARTICLE_IN_CONTAINER is "true" or "1" (any case): inside. Anything
// else, or unset: outside. (No /proc/1/cgroup guessing: it fails on cgroup v2.)
bool in_container();

// Returns the exit code for the process (main's result inside).
int containerize(const std::string &options_json, const std::function<int()> &main_fn);

// The image and runner objects as JSON text (pretty-printed), no side effects.
std::string containerize_render(const std::string &options_json);

}  // namespace mp::package
