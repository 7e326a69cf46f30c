#include "package/digest.h"

#include <openssl/evp.h>

#include <new>

#include "common/error.h"

namespace mp::package {

Sha256::Sha256() {
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (!c) throw std::bad_alloc();
    if (EVP_DigestInit_ex(c, EVP_sha256(), nullptr) != 1) {
        EVP_MD_CTX_free(c);
        throw Error(MP_ERROR, "OpenSSL could not initialise SHA-256");
    }
    ctx_ = c;
}

Sha256::~Sha256() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX *>(ctx_)); }

void Sha256::update(const void *data, size_t len) {
    if (done_) throw Error(MP_ESTATE, "internal: SHA-256 updated after it was finished");
    if (len && EVP_DigestUpdate(static_cast<EVP_MD_CTX *>(ctx_), data, len) != 1)
        throw Error(MP_ERROR, "OpenSSL SHA-256 update failed");
}

std::string Sha256::digest() {
    if (done_) throw Error(MP_ESTATE, "internal: SHA-256 finished twice");
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(static_cast<EVP_MD_CTX *>(ctx_), md, &n) != 1)
        throw Error(MP_ERROR, "OpenSSL SHA-256 final failed");
    done_ = true;
    static const char hex[] = "0123456789abcdef";
    std::string out = "sha256:";
    for (unsigned i = 0; i < n; ++i) {
        out += hex[md[i] >> 4];
        out += hex[md[i] & 15];
    }
    return out;
}

std::string sha256_digest(const std::string &data) {
    Sha256 h;
    h.update(data.data(), data.size());
    return h.digest();
}

std::string digest_hex(const std::string &digest) {
    auto colon = digest.find(':');
    return colon == std::string::npos ? digest : digest.substr(colon + 1);
}

}  // namespace mp::package
