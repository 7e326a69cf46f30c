// SHA-256 content digests ("sha256:<hex>"), the addresses of OCI blobs.
#pragma once

#include <cstddef>
#include <string>

namespace mp::package {

// Incremental SHA-256 over OpenSSL's EVP interface.
class Sha256 {
public:
    Sha256();
    ~Sha256();
    Sha256(const Sha256 &) = delete;
    Sha256 &operator=(const Sha256 &) = delete;
    void update(const void *data, size_t len);
    // "sha256:<64 hex>"; the hasher cannot be updated afterwards.
    std::string digest();

private:
    void *ctx_;  // EVP_MD_CTX*
    bool done_ = false;
};

// "sha256:<hex>" of `data`.
std::string sha256_digest(const std::string &data);

// The hex part of a "sha256:<hex>" digest.
std::string digest_hex(const std::string &digest);

}  // namespace mp::package
