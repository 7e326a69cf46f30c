// package_bench: how long containerize takes to build and push an image of a
// native program, and how big the image is.
//
//   package_bench [program]    (default: $MP_EXAMPLE_BIN, the C example)
//
// Measures, for `program` (its executable and shared-library closure):
//   - cold build: tar + gzip + digests of every layer (layer cache off);
//   - warm build: the same again with the in-process layer cache (what a
//     second containerize in one process, or render after build, costs);
//   - cold push to a local docker-registry (started here on 127.0.0.1:0),
//     then a warm push where every blob already exists;
//   - sizes: compressed (what is pushed) and uncompressed.
// Targets from the issue: build + push under 2 s, image under 10 MB.
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <regex>
#include <string>

#include "common/error.h"
#include "package/image.h"
#include "package/options.h"
#include "package/registry.h"
#include "../tests/package/proc.h"

using namespace mp::package;
using Clock = std::chrono::steady_clock;

static double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

int main(int argc, char **argv) {
    std::string program = argc > 1 ? argv[1] : (std::getenv("MP_EXAMPLE_BIN") ? std::getenv("MP_EXAMPLE_BIN") : "");
    if (program.empty()) {
        std::fprintf(stderr, "usage: package_bench PROGRAM (or set MP_EXAMPLE_BIN)\n");
        return 2;
    }
    try {
        Options o = parse_options("{\"name\": \"bench\", \"quiet\": true, \"command\": [\"" + program + "\"]}");
        BuildSettings cold;
        cold.use_cache = false;
        auto t0 = Clock::now();
        Image img = build_image(o, cold);
        double cold_build = since(t0);
        t0 = Clock::now();
        build_image(o);  // fills the cache
        t0 = Clock::now();
        build_image(o);
        double warm_build = since(t0);

        // The usual development loop across runs: the libraries layer comes
        // from the on-disk cache, only the program's layer is rebuilt.
        std::string cache = mptest::make_temp_dir("mp-bench-cache-");
        BuildSettings disk;
        disk.cache_dir = cache;
        build_image(o, disk);  // persists both layers
        clear_layer_memory_cache();
        t0 = Clock::now();
        build_image(o, disk);
        double disk_build = since(t0);
        mptest::remove_tree(cache);

        uint64_t uncompressed = 0;
        for (const auto &l : img.layers) uncompressed += l.uncompressed_size;
        std::printf("program:            %s\n", program.c_str());
        std::printf("layers:             runtime %zu files, app %zu files\n", img.layers[0].files, img.layers[1].files);
        std::printf("image size:         %.2f MB compressed (pushed), %.2f MB uncompressed\n",
                    img.total_compressed() / 1e6, uncompressed / 1e6);
        std::printf("build (cold):       %.3f s\n", cold_build);
        std::printf("build (disk cache): %.3f s (a new run: layers read back and re-verified)\n", disk_build);
        std::printf("build (warm cache): %.3f s (same process)\n", warm_build);

        if (!mptest::have_program("docker-registry")) {
            std::printf("push:               skipped (docker-registry not installed)\n");
            return 0;
        }
        std::string dir = mptest::make_temp_dir("mp-bench-");
        // "listening on" is logged at info level: run at info, to a file.
        mptest::write_file(dir + "/config.yml", "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: " +
                                                    dir + "/data\nhttp:\n  addr: 127.0.0.1:0\n  secret: bench\n");
        mptest::Child reg;
        reg.start({"docker-registry", "serve", dir + "/config.yml"}, {}, dir + "/log");
        std::regex re("listening on 127\\.0\\.0\\.1:([0-9]+)");
        int port = 0;
        for (int i = 0; i < 400 && !port; ++i) {
            std::smatch m;
            std::string text = mptest::read_file(dir + "/log");
            if (std::regex_search(text, m, re)) port = std::atoi(m[1].str().c_str());
            else mptest::sleep_ms(50);
        }
        if (!port) throw mp::Error(MP_ERROR, "docker-registry did not start");
        setenv("DOCKER_CONFIG", dir.c_str(), 1);  // no credentials needed here
        Options po = parse_options("{\"name\": \"bench\", \"quiet\": true, \"publish\": true, \"repository\": \"127.0.0.1:" +
                                   std::to_string(port) + "/bench\", \"command\": [\"" + program + "\"]}");
        t0 = Clock::now();
        Image pimg = build_image(po, cold);
        double build2 = since(t0);
        t0 = Clock::now();
        PushResult r1 = push_image(pimg, {});
        double push_cold = since(t0);
        t0 = Clock::now();
        PushResult r2 = push_image(pimg, {});
        double push_warm = since(t0);
        std::printf("push (cold):        %.3f s (%zu blobs, %.2f MB uploaded)\n", push_cold, r1.blobs_uploaded,
                    r1.bytes_uploaded / 1e6);
        std::printf("push (all exist):   %.3f s (%zu blobs skipped)\n", push_warm, r2.blobs_skipped);
        std::printf("build + push cold:  %.3f s (target < 2 s)\n", build2 + push_cold);
        std::printf("build + push, disk-cached build: %.3f s\n", disk_build + push_cold);
        std::printf("size target:        %s (%.2f MB, target < 10 MB)\n", img.total_compressed() < 10e6 ? "met" : "NOT met",
                    img.total_compressed() / 1e6);
        reg.kill_and_wait();
        mptest::remove_tree(dir);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "package_bench: %s\n", e.what());
        return 1;
    }
    return 0;
}
