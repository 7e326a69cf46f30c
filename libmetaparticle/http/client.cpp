#include "http/client.h"

#include <curl/curl.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <exception>
#include <mutex>

namespace mp::http {
namespace {

void global_init() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Transfer {
    const Request *req = nullptr;
    Response *resp = nullptr;
    size_t received = 0;          // head + body bytes, for max_response_bytes
    bool too_large = false;
    std::exception_ptr error;     // thrown by a callback; rethrown after curl returns
};

// Counts `n` more response bytes; false when past the cap.
bool account(Transfer *t, size_t n) {
    t->received += n;
    if (t->req->max_response_bytes && t->received > t->req->max_response_bytes) {
        t->too_large = true;
        return false;
    }
    return true;
}

// Both callbacks run inside libcurl's C frames: nothing may unwind through
// them. A failure aborts the transfer (a short return count) and is kept.
size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata) noexcept {
    auto *t = static_cast<Transfer *>(userdata);
    size_t n = size * nmemb;
    try {
        if (t->req->on_data) {
            if (!t->req->on_data(ptr, n)) {
                t->resp->stopped_by_callback = true;
                return 0;  // makes curl abort with CURLE_WRITE_ERROR
            }
            return n;
        }
        if (!account(t, n)) return 0;
        t->resp->body.append(ptr, n);
        return n;
    } catch (...) {
        t->error = std::current_exception();
        return 0;
    }
}

size_t on_header(char *ptr, size_t size, size_t nmemb, void *userdata) noexcept {
    auto *t = static_cast<Transfer *>(userdata);
    size_t n = size * nmemb;
    if (!account(t, n)) return 0;
    try {
        std::string line(ptr, n);
        if (line.rfind("HTTP/", 0) == 0) {
            t->resp->headers.clear();  // a new response (e.g. after 100-continue)
            return n;
        }
        auto colon = line.find(':');
        if (colon == std::string::npos) return n;
        std::string name = line.substr(0, colon);
        std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
        std::string value = line.substr(colon + 1);
        auto first = value.find_first_not_of(" \t");
        auto last = value.find_last_not_of(" \t\r\n");
        value = first == std::string::npos ? "" : value.substr(first, last - first + 1);
        t->resp->headers[name] = value;
        return n;
    } catch (...) {
        t->error = std::current_exception();
        return 0;
    }
}

int on_progress(void *userdata, curl_off_t, curl_off_t, curl_off_t ultotal, curl_off_t ulnow) noexcept {
    auto *t = static_cast<Transfer *>(userdata);
    try {
        if (t->req->on_upload && ultotal > 0)
            t->req->on_upload(static_cast<uint64_t>(ulnow), static_cast<uint64_t>(ultotal));
    } catch (...) {
        t->error = std::current_exception();
        return 1;
    }
    return (t->req->cancel && t->req->cancel->load()) ? 1 : 0;
}

// Every socket libcurl opens for us is close-on-exec. Otherwise a program
// that starts a child process (any binding's subprocess API, our exec
// credential plugins) while a request is open hands the connection to the
// child, which keeps it open after we close it: the sidecar would never see
// a canceled long-poll hang up and could grant the lock to nobody.
curl_socket_t open_cloexec_socket(void *, curlsocktype, struct curl_sockaddr *addr) {
    return socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
}

// How often a cancelable transfer looks at its cancel flag while it waits for
// the socket. curl_easy_perform() would only call the progress callback about
// once a second, so a cancel (Ctrl-C, Dispose, a CancellationToken) took up
// to a second; this bounds it. A waiting long-poll costs 20 wake-ups a second.
constexpr int kCancelPollMs = 50;

// curl_easy_perform(), run through the Client's own multi handle so that a
// wait can be cut short by `cancel`. Removing the unfinished transfer closes
// its connection, which is how the server learns the client gave up.
CURLcode perform(CURL *c, CURLM *m, const std::atomic<bool> *cancel) {
    if (curl_multi_add_handle(m, c) != CURLM_OK) return CURLE_FAILED_INIT;
    CURLcode rc = CURLE_OK;
    for (;;) {
        int running = 0;
        if (curl_multi_perform(m, &running) != CURLM_OK) {
            rc = CURLE_FAILED_INIT;
            break;
        }
        if (running == 0) {
            int left = 0;
            while (CURLMsg *msg = curl_multi_info_read(m, &left))
                if (msg->msg == CURLMSG_DONE && msg->easy_handle == c) rc = msg->data.result;
            break;
        }
        if (cancel && cancel->load()) {
            rc = CURLE_ABORTED_BY_CALLBACK;
            break;
        }
        if (curl_multi_poll(m, nullptr, 0, cancel ? kCancelPollMs : 1000, nullptr) != CURLM_OK) {
            rc = CURLE_FAILED_INIT;
            break;
        }
    }
    curl_multi_remove_handle(m, c);
    return rc;
}

}  // namespace

std::string Response::header(const std::string &lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
}

bool TransportError::timed_out() const { return curl_code_ == CURLE_OPERATION_TIMEDOUT; }
bool TransportError::connection_refused() const { return curl_code_ == CURLE_COULDNT_CONNECT; }
bool TransportError::connection_dropped() const {
    return curl_code_ == CURLE_GOT_NOTHING || curl_code_ == CURLE_RECV_ERROR || curl_code_ == CURLE_SEND_ERROR ||
           curl_code_ == CURLE_PARTIAL_FILE;
}

Client::Client() {
    global_init();
    curl_ = curl_easy_init();
    multi_ = curl_multi_init();
    if (!curl_ || !multi_) {
        if (curl_) curl_easy_cleanup(static_cast<CURL *>(curl_));
        if (multi_) curl_multi_cleanup(static_cast<CURLM *>(multi_));
        throw std::bad_alloc();
    }
}

Client::~Client() {
    // The multi handle owns the connection cache; the easy handle was removed
    // from it at the end of each request.
    curl_multi_cleanup(static_cast<CURLM *>(multi_));
    curl_easy_cleanup(static_cast<CURL *>(curl_));
}

void Client::set_tls(const Tls &tls) { tls_ = tls; }
void Client::set_bearer_token(const std::string &token) { bearer_ = token; }
void Client::set_basic_auth(const std::string &user, const std::string &password) {
    basic_user_ = user;
    basic_password_ = password;
}
void Client::set_unix_socket(const std::string &path) { unix_socket_ = path; }
void Client::set_user_agent(const std::string &ua) { user_agent_ = ua; }

Response Client::request(const Request &req) {
    CURL *c = static_cast<CURL *>(curl_);
    curl_easy_reset(c);  // keeps the connection cache, clears options
    Response resp;
    Transfer t;
    t.req = &req;
    t.resp = &resp;

    curl_easy_setopt(c, CURLOPT_URL, req.url.c_str());
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, user_agent_.c_str());
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, req.cancel || req.on_upload ? 0L : 1L);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_cloexec_socket);
    if (req.timeout_ms > 0) curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, req.timeout_ms);
    if (req.connect_timeout_ms > 0) curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, req.connect_timeout_ms);
    if (!unix_socket_.empty()) curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, unix_socket_.c_str());

    if (req.method == "GET") {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    } else if (req.method == "HEAD") {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req.method.c_str());
    }
    if (req.method != "GET" && req.method != "HEAD") {
        // Always send the body (possibly empty) with an explicit length.
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, req.body.data());
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
    }

    // TLS
    struct curl_blob ca_blob, cert_blob, key_blob;
    if (!tls_.ca_pem.empty()) {
        ca_blob = {const_cast<char *>(tls_.ca_pem.data()), tls_.ca_pem.size(), CURL_BLOB_COPY};
        curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &ca_blob);
    } else if (!tls_.ca_file.empty()) {
        curl_easy_setopt(c, CURLOPT_CAINFO, tls_.ca_file.c_str());
    }
    if (!tls_.cert_pem.empty()) {
        cert_blob = {const_cast<char *>(tls_.cert_pem.data()), tls_.cert_pem.size(), CURL_BLOB_COPY};
        curl_easy_setopt(c, CURLOPT_SSLCERT_BLOB, &cert_blob);
        curl_easy_setopt(c, CURLOPT_SSLCERTTYPE, "PEM");
    }
    if (!tls_.key_pem.empty()) {
        key_blob = {const_cast<char *>(tls_.key_pem.data()), tls_.key_pem.size(), CURL_BLOB_COPY};
        curl_easy_setopt(c, CURLOPT_SSLKEY_BLOB, &key_blob);
        curl_easy_setopt(c, CURLOPT_SSLKEYTYPE, "PEM");
    }
    if (tls_.insecure_skip_verify) {
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }

    struct curl_slist *hdrs = nullptr;
    std::string auth;
    if (!bearer_.empty()) {
        auth = "Authorization: Bearer " + bearer_;
        hdrs = curl_slist_append(hdrs, auth.c_str());
    } else if (!basic_user_.empty()) {
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
        curl_easy_setopt(c, CURLOPT_USERNAME, basic_user_.c_str());
        curl_easy_setopt(c, CURLOPT_PASSWORD, basic_password_.c_str());
    }
    hdrs = curl_slist_append(hdrs, "Expect:");  // no 100-continue round trip
    for (const auto &h : req.headers) hdrs = curl_slist_append(hdrs, h.c_str());
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);

    char errbuf[CURL_ERROR_SIZE] = {0};
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);

    CURLcode rc = perform(c, static_cast<CURLM *>(multi_), req.cancel);
    curl_slist_free_all(hdrs);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp.status);

    if (t.error) std::rethrow_exception(t.error);
    if (t.too_large)
        throw Error(MP_EPROTOCOL, req.method + " " + req.url + ": the answer is larger than " +
                                      (req.max_response_bytes % (1u << 20) == 0
                                           ? std::to_string(req.max_response_bytes >> 20) + " MiB"
                                           : std::to_string(req.max_response_bytes) + " bytes") +
                                      ", more than this client accepts; the server is misbehaving");
    if (rc == CURLE_WRITE_ERROR && resp.stopped_by_callback) return resp;
    if (rc == CURLE_ABORTED_BY_CALLBACK) throw Error(MP_ECANCELED, "request canceled");
    if (rc != CURLE_OK) {
        std::string detail = rc != CURLE_FAILED_INIT && errbuf[0] ? errbuf : curl_easy_strerror(rc);
        int code = rc == CURLE_OPERATION_TIMEDOUT ? MP_ETIMEOUT : MP_ERROR;
        throw TransportError(code, req.method + " " + req.url + ": " + detail, rc);
    }
    return resp;
}

std::string url_escape(const std::string &s) {
    static const char hex[] = "0123456789ABCDEF";
    std::string out;
    for (unsigned char ch : s) {
        if (std::isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
            out += static_cast<char>(ch);
        } else {
            out += '%';
            out += hex[ch >> 4];
            out += hex[ch & 15];
        }
    }
    return out;
}

}  // namespace mp::http
