// The "docker" runner: runs the image's replicas on a Docker Engine API
// (Docker, or Podman's Docker-compatible service) and streams their logs.
//
//  1. reach the engine (Engine::default_host(): $DOCKER_HOST, else the
//     docker or podman socket);
//  2. get the image there: POST /images/load of a docker-archive built in
//     memory (no registry involved) or, when "publish" is set, pull the
//     pushed reference (so what runs is what was published);
//  3. remove containers left by an earlier run (label io.metaparticle.name);
//  4. create and start <name>-0 .. <name>-(n-1) (n = jobSpec.count,
//     shardSpec.shards or replicas), replica i publishing port p on host
//     port p + i (127.0.0.1 unless "public");
//  5. follow every replica's logs, each line prefixed "[<name>-i] ", stdout
//     to stdout and stderr to stderr;
//  6. on `interrupted` (SIGINT/SIGTERM), or when every replica has exited:
//     stop and remove them, unless keepRunning.
#pragma once

#include <atomic>
#include <functional>
#include <string>

#include "package/image.h"
#include "package/options.h"

namespace mp::package {

// Checks that the engine answers (Engine::default_host()), so an absent
// engine is reported before a build. Throws Error(MP_EENGINE).
void docker_preflight();

// Returns 0 when interrupted; when all replicas exited by themselves, the
// first non-zero exit code among them (0 if all succeeded).
int run_docker(const Options &o, const Image &image, const std::function<void(const std::string &)> &log,
               const std::atomic<bool> &interrupted);

}  // namespace mp::package
