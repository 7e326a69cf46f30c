#include "kube/yaml.h"

#include <yaml.h>

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "common/error.h"

namespace mp::kube {
namespace {

// Bounds against hostile input ("billion laughs" through aliases, or
// recursive aliases).
constexpr int kMaxDepth = 200;
constexpr long kMaxNodes = 1000000;

bool is_tag(const yaml_node_t *n, const char *tag) {
    return n->tag && std::strcmp(reinterpret_cast<const char *>(n->tag), tag) == 0;
}

json::Ptr make(cJSON *j) {
    if (!j) throw std::bad_alloc();
    return json::Ptr(j);
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// [-+]?[0-9]+
bool is_decimal_int(const std::string &s) {
    size_t i = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
    if (i == s.size()) return false;
    for (; i < s.size(); ++i)
        if (!is_digit(s[i])) return false;
    return true;
}

// 0o[0-7]+ or 0x[0-9a-fA-F]+
bool is_prefixed_int(const std::string &s, char kind) {
    if (s.size() < 3 || s[0] != '0' || s[1] != kind) return false;
    for (size_t i = 2; i < s.size(); ++i) {
        char c = s[i];
        bool ok = kind == 'o' ? (c >= '0' && c <= '7') : std::isxdigit(static_cast<unsigned char>(c)) != 0;
        if (!ok) return false;
    }
    return true;
}

// [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
bool is_float(const std::string &s) {
    size_t i = 0, n = s.size();
    if (i < n && (s[i] == '-' || s[i] == '+')) ++i;
    size_t int_digits = 0, frac_digits = 0;
    while (i < n && is_digit(s[i])) ++i, ++int_digits;
    if (i < n && s[i] == '.') {
        ++i;
        while (i < n && is_digit(s[i])) ++i, ++frac_digits;
    }
    if (int_digits == 0 && frac_digits == 0) return false;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        ++i;
        if (i < n && (s[i] == '-' || s[i] == '+')) ++i;
        size_t exp_digits = 0;
        while (i < n && is_digit(s[i])) ++i, ++exp_digits;
        if (exp_digits == 0) return false;
    }
    return i == n;
}

json::Ptr plain_scalar(const std::string &s) {
    if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return make(cJSON_CreateNull());
    if (s == "true" || s == "True" || s == "TRUE") return make(cJSON_CreateTrue());
    if (s == "false" || s == "False" || s == "FALSE") return make(cJSON_CreateFalse());
    if (is_decimal_int(s)) return make(cJSON_CreateNumber(std::strtod(s.c_str(), nullptr)));
    if (is_prefixed_int(s, 'o'))
        return make(cJSON_CreateNumber(static_cast<double>(std::strtoll(s.c_str() + 2, nullptr, 8))));
    if (is_prefixed_int(s, 'x'))
        return make(cJSON_CreateNumber(static_cast<double>(std::strtoll(s.c_str() + 2, nullptr, 16))));
    if (is_float(s)) {
        double d = std::strtod(s.c_str(), nullptr);
        if (std::isfinite(d)) return make(cJSON_CreateNumber(d));
    }
    return make(cJSON_CreateString(s.c_str()));
}

struct Converter {
    yaml_document_t *doc;
    std::string source;
    long nodes = 0;

    [[noreturn]] void fail(const yaml_node_t *n, const std::string &what) {
        throw Error(MP_EINVAL, source + ": " + what + " (line " + std::to_string(n->start_mark.line + 1) + ")");
    }

    json::Ptr scalar(const yaml_node_t *n) {
        std::string s(reinterpret_cast<const char *>(n->data.scalar.value), n->data.scalar.length);
        bool plain = n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        if (is_tag(n, YAML_STR_TAG)) {
            // libyaml gives untagged scalars the default str tag; only plain
            // ones are resolved by content.
            return plain ? plain_scalar(s) : make(cJSON_CreateString(s.c_str()));
        }
        if (is_tag(n, YAML_NULL_TAG)) return make(cJSON_CreateNull());
        if (is_tag(n, YAML_BOOL_TAG)) {
            json::Ptr v = plain_scalar(s);
            if (!cJSON_IsBool(v.get())) fail(n, "'" + s + "' is not a boolean");
            return v;
        }
        if (is_tag(n, YAML_INT_TAG) || is_tag(n, YAML_FLOAT_TAG)) {
            json::Ptr v = plain_scalar(s);
            if (!cJSON_IsNumber(v.get())) fail(n, "'" + s + "' is not a number");
            return v;
        }
        return make(cJSON_CreateString(s.c_str()));  // unknown tags: keep the text
    }

    static std::string key_text(const cJSON *k) {
        if (cJSON_IsString(k)) return k->valuestring;
        if (cJSON_IsNull(k)) return "null";
        if (cJSON_IsTrue(k)) return "true";
        if (cJSON_IsFalse(k)) return "false";
        if (cJSON_IsNumber(k)) return json::print(k);
        return "";
    }

    json::Ptr node(const yaml_node_t *n, int depth) {
        if (!n) return make(cJSON_CreateNull());
        if (depth > kMaxDepth) fail(n, "nesting too deep (recursive alias?)");
        if (++nodes > kMaxNodes) fail(n, "document too large (alias expansion)");
        switch (n->type) {
        case YAML_SCALAR_NODE:
            return scalar(n);
        case YAML_SEQUENCE_NODE: {
            json::Ptr arr = json::array();
            for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; ++it) {
                cJSON_AddItemToArray(arr.get(), node(yaml_document_get_node(doc, *it), depth + 1).release());
            }
            return arr;
        }
        case YAML_MAPPING_NODE: {
            json::Ptr obj = json::object();
            std::vector<json::Ptr> merges;
            for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; ++p) {
                const yaml_node_t *kn = yaml_document_get_node(doc, p->key);
                json::Ptr key = node(kn, depth + 1);
                if (cJSON_IsObject(key.get()) || cJSON_IsArray(key.get())) fail(kn, "complex mapping keys are not supported");
                std::string k = key_text(key.get());
                json::Ptr value = node(yaml_document_get_node(doc, p->value), depth + 1);
                if (k == "<<" && kn->type == YAML_SCALAR_NODE && kn->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
                    merges.push_back(std::move(value));  // merge key, applied after explicit keys
                    continue;
                }
                json::set(obj.get(), k.c_str(), std::move(value));
            }
            for (auto &m : merges) {
                std::vector<const cJSON *> sources;
                if (cJSON_IsObject(m.get())) sources.push_back(m.get());
                if (cJSON_IsArray(m.get())) {
                    const cJSON *el;
                    cJSON_ArrayForEach(el, m.get()) if (cJSON_IsObject(el)) sources.push_back(el);
                }
                for (const cJSON *src : sources) {
                    const cJSON *el;
                    cJSON_ArrayForEach(el, src) {
                        if (!cJSON_GetObjectItemCaseSensitive(obj.get(), el->string))
                            cJSON_AddItemToObject(obj.get(), el->string, cJSON_Duplicate(el, 1));
                    }
                }
            }
            return obj;
        }
        default:
            return make(cJSON_CreateNull());
        }
    }
};

std::vector<json::Ptr> load(const std::string &text, const std::string &source, bool first_only) {
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) throw std::bad_alloc();
    yaml_parser_set_input_string(&parser, reinterpret_cast<const unsigned char *>(text.data()), text.size());
    std::vector<json::Ptr> out;
    for (;;) {
        yaml_document_t doc;
        if (!yaml_parser_load(&parser, &doc)) {
            std::string msg = source + ": invalid YAML: " + (parser.problem ? parser.problem : "syntax error");
            msg += " at line " + std::to_string(parser.problem_mark.line + 1) + ", column " +
                   std::to_string(parser.problem_mark.column + 1);
            if (parser.context) msg += std::string(" (") + parser.context + ")";
            yaml_parser_delete(&parser);
            throw Error(MP_EINVAL, msg);
        }
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        if (!root) {  // end of stream
            yaml_document_delete(&doc);
            break;
        }
        try {
            Converter c{&doc, source};
            json::Ptr j = c.node(root, 0);
            if (!cJSON_IsNull(j.get()) || first_only) out.push_back(std::move(j));
        } catch (...) {
            yaml_document_delete(&doc);
            yaml_parser_delete(&parser);
            throw;
        }
        yaml_document_delete(&doc);
        if (first_only && !out.empty()) break;
    }
    yaml_parser_delete(&parser);
    return out;
}

}  // namespace

json::Ptr yaml_to_json(const std::string &text, const std::string &source) {
    auto docs = load(text, source, true);
    if (docs.empty()) return make(cJSON_CreateNull());
    return std::move(docs.front());
}

std::vector<json::Ptr> yaml_to_json_all(const std::string &text, const std::string &source) {
    return load(text, source, false);
}

}  // namespace mp::kube
