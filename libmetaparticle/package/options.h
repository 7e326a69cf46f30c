// Options of containerize(): parsed from JSON text with the seed names, so
// every binding (C, Python, Node, .NET) is validated by the same code and
// gets the same messages.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mp::package {

enum class Runner { Docker, Kubernetes };

struct FileCopy {
    std::string src;   // host path (file or directory)
    std::string dest;  // absolute path in the image
};

struct Options {
    std::string name;                 // image and object name (a DNS-1035 label)
    std::string repository;           // image prefix ("" = local only)
    std::string tag = "latest";
    std::vector<int> ports;
    int replicas = 1;
    Runner runner = Runner::Docker;
    bool publish = false;
    bool is_public = false;
    std::optional<int> shards;        // shardSpec.shards
    std::string shard_url_pattern;    // shardSpec.urlPattern
    std::optional<int> job_count;     // jobSpec.count
    std::string ns;                   // Kubernetes namespace ("" = the runner's default)
    std::vector<std::string> image_pull_secrets;  // Kubernetes Secrets the pods pull the image with
    std::map<std::string, std::string> env;  // sorted: the image config is reproducible
    std::vector<FileCopy> files;
    std::string base_image;
    bool dry_run = false;
    bool keep_running = false;
    bool quiet = false;
    std::vector<std::string> command; // argv of the container; command[0] is absolute
    std::vector<std::string> include; // absolute host paths copied at the same path
    std::string working_dir = "/";
    bool working_dir_set = false;     // given explicitly (else a base image's WorkingDir is kept)

    // "repository/name:tag", or "name:tag" without a repository.
    std::string image_reference() const;
    // How many containers/pods the runner starts: jobSpec.count, else
    // shardSpec.shards, else replicas.
    int instance_count() const;
};

// Parse and validate. `json` may be empty (all defaults). Throws
// Error(MP_EINVAL) naming the offending option and what is expected.
// Defaults that depend on the process (name, command) are filled in here:
// name from the executable's basename, command from /proc/self/exe and the
// process's own arguments.
Options parse_options(const std::string &json);

// Turn any string into a valid name (lowercase letters, digits and '-',
// starting with a letter, at most 63 characters); "app" when nothing is left.
std::string sanitize_name(const std::string &raw);

// "" when `name` is a DNS-1035 label (what Kubernetes requires of Service
// names, and so of ours), else a sentence saying what is wrong.
std::string validate_name(const std::string &name);

// "" when `ns` is a valid Kubernetes namespace name (DNS-1123 label).
std::string validate_namespace(const std::string &ns);

// The process's executable (/proc/self/exe resolved) and its arguments
// (/proc/self/cmdline), argv[0] replaced by the executable's absolute path.
std::vector<std::string> self_command();

}  // namespace mp::package
