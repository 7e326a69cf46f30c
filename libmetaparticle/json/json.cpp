#include "json/json.h"

#include <cmath>

namespace mp::json {

Ptr parse(const std::string &text) { return Ptr(cJSON_ParseWithLength(text.data(), text.size())); }

Ptr parse_exact(const std::string &text) {
    // cJSON decodes \u0000 into a C string, which ends there: "a\u0000b" would read as "a".
    for (size_t i = text.find("\\u"); i != std::string::npos; i = text.find("\\u", i + 2))
        if (text.compare(i + 2, 4, "0000") == 0) {
            // Not an escaped backslash followed by "u0000"? Count the backslashes before it.
            size_t k = i;
            while (k > 0 && text[k - 1] == '\\') --k;
            if ((i - k) % 2 == 0) return nullptr;
        }
    const char *end = nullptr;
    Ptr p(cJSON_ParseWithLengthOpts(text.data(), text.size(), &end, false));
    if (!p || !end) return nullptr;
    for (const char *c = end; c < text.data() + text.size(); ++c)
        if (*c != ' ' && *c != '\t' && *c != '\r' && *c != '\n') return nullptr;
    return p;
}

std::string print(const cJSON *j) {
    if (!j) return "null";
    char *s = cJSON_PrintUnformatted(j);
    if (!s) throw std::bad_alloc();
    std::string out(s);
    cJSON_free(s);
    return out;
}

Ptr object() {
    Ptr p(cJSON_CreateObject());
    if (!p) throw std::bad_alloc();
    return p;
}

Ptr array() {
    Ptr p(cJSON_CreateArray());
    if (!p) throw std::bad_alloc();
    return p;
}

std::optional<std::string> get_string(const cJSON *obj, const char *key) {
    const cJSON *v = obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : nullptr;
    if (!cJSON_IsString(v) || !v->valuestring) return std::nullopt;
    return std::string(v->valuestring);
}

std::optional<int64_t> get_int(const cJSON *obj, const char *key) {
    const cJSON *v = obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : nullptr;
    if (!cJSON_IsNumber(v)) return std::nullopt;
    double d = v->valuedouble;
    if (!std::isfinite(d) || d != std::floor(d) || std::fabs(d) > 9007199254740992.0) return std::nullopt;
    return static_cast<int64_t>(d);
}

std::optional<bool> get_bool(const cJSON *obj, const char *key) {
    const cJSON *v = obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : nullptr;
    if (!cJSON_IsBool(v)) return std::nullopt;
    return cJSON_IsTrue(v) != 0;
}

const cJSON *get_object(const cJSON *obj, const char *key) {
    const cJSON *v = obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : nullptr;
    return cJSON_IsObject(v) ? v : nullptr;
}

const cJSON *get_array(const cJSON *obj, const char *key) {
    const cJSON *v = obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : nullptr;
    return cJSON_IsArray(v) ? v : nullptr;
}

const cJSON *path(const cJSON *obj, std::initializer_list<const char *> keys) {
    const cJSON *cur = obj;
    for (const char *k : keys) {
        if (!cJSON_IsObject(cur)) return nullptr;
        cur = cJSON_GetObjectItemCaseSensitive(cur, k);
    }
    return cur;
}

static void replace(cJSON *obj, const char *key, cJSON *item) {
    if (!item) throw std::bad_alloc();
    if (cJSON_GetObjectItemCaseSensitive(obj, key))
        cJSON_ReplaceItemInObjectCaseSensitive(obj, key, item);
    else
        cJSON_AddItemToObject(obj, key, item);
}

void set_string(cJSON *obj, const char *key, const std::string &value) {
    replace(obj, key, cJSON_CreateString(value.c_str()));
}

void set_int(cJSON *obj, const char *key, int64_t value) {
    replace(obj, key, cJSON_CreateNumber(static_cast<double>(value)));
}

void set_bool(cJSON *obj, const char *key, bool value) { replace(obj, key, cJSON_CreateBool(value)); }

cJSON *set(cJSON *obj, const char *key, Ptr child) {
    cJSON *raw = child.release();
    replace(obj, key, raw);
    return raw;
}

cJSON *ensure_object(cJSON *obj, const char *key) {
    cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (cJSON_IsObject(v)) return v;
    return set(obj, key, object());
}

}  // namespace mp::json
