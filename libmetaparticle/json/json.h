// Thin RAII and accessor helpers over cJSON. cJSON does the parsing and
// printing; these only make ownership and optional fields less error-prone.
#pragma once

#include <cjson/cJSON.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace mp::json {

struct Deleter {
    void operator()(cJSON *j) const noexcept { cJSON_Delete(j); }
};
using Ptr = std::unique_ptr<cJSON, Deleter>;

// Parse `text`; returns an empty Ptr if it is not valid JSON.
Ptr parse(const std::string &text);
// Like parse(), but `text` must be exactly one JSON value, with nothing but
// white space after it (no trailing data, no NUL byte), and no string in it
// may contain an escaped NUL (\u0000), which cJSON would silently cut.
Ptr parse_exact(const std::string &text);
// Compact text of `j` ("null" for nullptr).
std::string print(const cJSON *j);

Ptr object();
Ptr array();

// Accessors return nullopt when the member is missing or of another type.
std::optional<std::string> get_string(const cJSON *obj, const char *key);
std::optional<int64_t> get_int(const cJSON *obj, const char *key);
std::optional<bool> get_bool(const cJSON *obj, const char *key);
const cJSON *get_object(const cJSON *obj, const char *key);
const cJSON *get_array(const cJSON *obj, const char *key);
// Walk a dotted path of object members, e.g. path(o, {"metadata", "name"}).
const cJSON *path(const cJSON *obj, std::initializer_list<const char *> keys);

// Setters replace an existing member of the same name.
void set_string(cJSON *obj, const char *key, const std::string &value);
void set_int(cJSON *obj, const char *key, int64_t value);
void set_bool(cJSON *obj, const char *key, bool value);
// Takes ownership of `child`; returns the raw pointer for further building.
cJSON *set(cJSON *obj, const char *key, Ptr child);
// Returns obj[key], creating an empty object there when missing.
cJSON *ensure_object(cJSON *obj, const char *key);

}  // namespace mp::json
