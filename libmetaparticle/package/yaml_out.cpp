#include "package/yaml_out.h"

#include <yaml.h>

#include <cctype>
#include <cstring>

#include "common/error.h"

namespace mp::package {
namespace {

// Would a plain scalar with this text read back as something other than a
// string? YAML 1.1 readers (go-yaml v2, behind kubectl) also take yes/no/on/
// off/y/n as booleans and 0755 / 0x1f as numbers: quote all of those.
bool needs_quotes(const std::string &s) {
    if (s.empty()) return true;
    unsigned char c = static_cast<unsigned char>(s[0]);
    if (std::isdigit(c) || c == '+' || c == '-' || c == '.' || c == '~') return true;
    std::string lower;
    for (char ch : s) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    for (const char *word : {"true", "false", "yes", "no", "on", "off", "y", "n", "null"})
        if (lower == word) return true;
    return false;
}

class Emitter {
public:
    explicit Emitter(std::string *out) : out_(out) {
        if (!yaml_emitter_initialize(&e_)) throw std::bad_alloc();
        yaml_emitter_set_output(&e_, &Emitter::write, out_);
        yaml_emitter_set_unicode(&e_, 1);
        yaml_emitter_set_width(&e_, -1);  // never fold long strings (image digests, JSON in env)
        yaml_emitter_set_indent(&e_, 2);
        yaml_event_t ev;
        yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
        emit(&ev);
    }
    ~Emitter() { yaml_emitter_delete(&e_); }
    Emitter(const Emitter &) = delete;
    Emitter &operator=(const Emitter &) = delete;

    void document(const cJSON *v, bool explicit_start) {
        yaml_event_t ev;
        yaml_document_start_event_initialize(&ev, nullptr, nullptr, nullptr, explicit_start ? 0 : 1);
        emit(&ev);
        node(v);
        yaml_document_end_event_initialize(&ev, 1);
        emit(&ev);
    }
    void finish() {
        yaml_event_t ev;
        yaml_stream_end_event_initialize(&ev);
        emit(&ev);
        yaml_emitter_flush(&e_);
    }

private:
    static int write(void *data, unsigned char *buffer, size_t size) {
        static_cast<std::string *>(data)->append(reinterpret_cast<const char *>(buffer), size);
        return 1;
    }
    void emit(yaml_event_t *ev) {
        if (!yaml_emitter_emit(&e_, ev))
            throw Error(MP_ERROR, std::string("cannot write YAML: ") + (e_.problem ? e_.problem : "libyaml emitter error"));
    }
    void scalar(const std::string &text, bool quote) {
        yaml_event_t ev;
        yaml_scalar_event_initialize(&ev, nullptr, nullptr, reinterpret_cast<yaml_char_t *>(const_cast<char *>(text.c_str())),
                                     static_cast<int>(text.size()), 1, 1,
                                     quote ? YAML_DOUBLE_QUOTED_SCALAR_STYLE : YAML_ANY_SCALAR_STYLE);
        emit(&ev);
    }
    void node(const cJSON *v) {
        yaml_event_t ev;
        if (cJSON_IsObject(v)) {
            yaml_mapping_start_event_initialize(&ev, nullptr, nullptr, 1, YAML_BLOCK_MAPPING_STYLE);
            emit(&ev);
            for (const cJSON *c = v->child; c; c = c->next) {
                std::string key = c->string ? c->string : "";
                scalar(key, needs_quotes(key));
                node(c);
            }
            yaml_mapping_end_event_initialize(&ev);
            emit(&ev);
        } else if (cJSON_IsArray(v)) {
            yaml_sequence_start_event_initialize(&ev, nullptr, nullptr, 1,
                                                 v->child ? YAML_BLOCK_SEQUENCE_STYLE : YAML_FLOW_SEQUENCE_STYLE);
            emit(&ev);
            for (const cJSON *c = v->child; c; c = c->next) node(c);
            yaml_sequence_end_event_initialize(&ev);
            emit(&ev);
        } else if (cJSON_IsString(v)) {
            std::string s = v->valuestring;
            scalar(s, needs_quotes(s));
        } else if (cJSON_IsBool(v)) {
            scalar(cJSON_IsTrue(v) ? "true" : "false", false);
        } else if (cJSON_IsNumber(v)) {
            char *t = cJSON_PrintUnformatted(v);
            std::string s = t ? t : "0";
            cJSON_free(t);
            scalar(s, false);
        } else {
            scalar("null", false);
        }
    }

    yaml_emitter_t e_;
    std::string *out_;
};

}  // namespace

std::string to_yaml_documents(const std::vector<const cJSON *> &documents) {
    std::string out;
    Emitter e(&out);
    for (const cJSON *d : documents) e.document(d, true);
    e.finish();
    return out;
}

std::string to_yaml_comment(const cJSON *value) {
    std::string text;
    {
        Emitter e(&text);
        e.document(value, false);
        e.finish();
    }
    // libyaml ends an implicit document with "...\n" only when needed; drop it.
    if (text.size() >= 4 && text.compare(text.size() - 4, 4, "...\n") == 0) text.erase(text.size() - 4);
    std::string out;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t nl = text.find('\n', pos);
        if (nl == std::string::npos) nl = text.size();
        out += "# " + text.substr(pos, nl - pos) + "\n";
        pos = nl + 1;
    }
    return out;
}

std::string dry_run_yaml(const cJSON *rendered, const std::vector<std::string> &warnings) {
    std::string out =
        "# containerize dry run. The Kubernetes objects below are YAML documents for `kubectl apply -f -`;\n"
        "# the image and the Docker containers are in these comments, which kubectl ignores.\n";
    auto info = json::object();
    if (const cJSON *img = json::get_object(rendered, "image")) json::set(info.get(), "image", json::Ptr(cJSON_Duplicate(img, 1)));
    if (const cJSON *d = json::get_array(rendered, "docker")) json::set(info.get(), "docker", json::Ptr(cJSON_Duplicate(d, 1)));
    auto w = json::array();
    for (const auto &s : warnings) cJSON_AddItemToArray(w.get(), cJSON_CreateString(s.c_str()));
    json::set(info.get(), "warnings", std::move(w));
    out += to_yaml_comment(info.get());
    std::vector<const cJSON *> docs;
    const cJSON *o;
    cJSON_ArrayForEach(o, json::get_array(rendered, "kubernetes")) docs.push_back(o);
    if (!docs.empty()) out += to_yaml_documents(docs);
    return out;
}

}  // namespace mp::package
