// HTTP client over libcurl, shared by the sync client (talking to
// mp-sidecar), the Kubernetes client, the registry client and the Docker
// runner. One Client owns one curl easy handle, so connections are kept alive
// between requests; a Client is not thread-safe: use one per thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "common/error.h"

namespace mp::http {

// How to reach and authenticate to a server; shared by all requests of a Client.
struct Tls {
    std::string ca_file;      // PEM file of trusted CAs ("" = system store)
    std::string ca_pem;       // PEM CA data (wins over ca_file)
    std::string cert_pem;     // client certificate (PEM data)
    std::string key_pem;      // client key (PEM data)
    bool insecure_skip_verify = false;
};

struct Request {
    std::string method = "GET";
    std::string url;                          // http://, https://; with unix_socket: http://localhost/path
    std::vector<std::string> headers;         // "Name: value"
    std::string body;
    long timeout_ms = 0;                      // whole transfer; 0 = none
    long connect_timeout_ms = 5000;
    // Streaming: when set, body bytes go here as they arrive instead of into
    // Response::body. Return false to stop the transfer (not an error). An
    // exception it throws aborts the transfer and is rethrown by request().
    std::function<bool(const char *data, size_t len)> on_data;
    // Most bytes of response head and (buffered) body accepted; past it the
    // transfer is aborted and request() throws Error(MP_EPROTOCOL). 0 = no cap.
    size_t max_response_bytes = 0;
    // Checked while the transfer runs; when it becomes true the transfer is
    // aborted and request() throws Error(MP_ECANCELED).
    const std::atomic<bool> *cancel = nullptr;
    // Called now and then while the body is sent: (bytes sent, body size).
    std::function<void(uint64_t sent, uint64_t total)> on_upload;
};

struct Response {
    long status = 0;
    std::map<std::string, std::string> headers;  // names lower-cased
    std::string body;
    bool stopped_by_callback = false;             // on_data returned false
    std::string header(const std::string &lower_name) const;
};

// A transport failure (connection refused, TLS failure, timeout...).
class TransportError : public Error {
public:
    TransportError(int code, const std::string &msg, int curl_code)
        : Error(code, msg), curl_code_(curl_code) {}
    int curl_code() const { return curl_code_; }
    bool timed_out() const;
    bool connection_refused() const;
    // The server accepted the connection, then closed or reset it without
    // a (complete) answer.
    bool connection_dropped() const;

private:
    int curl_code_;
};

class Client {
public:
    Client();
    ~Client();
    Client(const Client &) = delete;
    Client &operator=(const Client &) = delete;

    void set_tls(const Tls &tls);
    void set_bearer_token(const std::string &token);       // "" = none
    void set_basic_auth(const std::string &user, const std::string &password);
    void set_unix_socket(const std::string &path);         // "" = TCP
    void set_user_agent(const std::string &ua);

    // Performs the request. Throws TransportError (code MP_ERROR, or
    // MP_ETIMEOUT on timeout) when no HTTP answer arrived, Error(MP_ECANCELED)
    // when canceled, Error(MP_EPROTOCOL) past max_response_bytes. Any HTTP
    // status is returned, not thrown. No exception ever unwinds through
    // libcurl: callbacks catch, abort the transfer, and request() rethrows
    // once curl has returned, so the Client stays usable after any failure.
    Response request(const Request &req);

private:
    void *curl_;   // CURL*
    void *multi_;  // CURLM*: runs the transfers (cancelable waits) and keeps the connections
    Tls tls_;
    std::string bearer_;
    std::string basic_user_, basic_password_;
    std::string unix_socket_;
    std::string user_agent_ = "metaparticle/" MP_VERSION_STRING;
};

// Percent-encode a query parameter or path segment.
std::string url_escape(const std::string &s);

}  // namespace mp::http
