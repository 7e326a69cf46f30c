#include "common/error.h"

#include <cstdlib>

namespace mp {
namespace {
thread_local std::string g_last_message;
thread_local int g_last_code = MP_OK;
}  // namespace

int set_last_error(int code, const std::string &message) {
    g_last_code = code;
    g_last_message = message;
    return code;
}

void clear_last_error() {
    g_last_code = MP_OK;
    g_last_message.clear();
}

}  // namespace mp

extern "C" {

const char *mp_error_last(void) { return mp::g_last_message.c_str(); }

int mp_error_last_code(void) { return mp::g_last_code; }

const char *mp_error_name(int code) {
    switch (code) {
    case MP_OK: return "MP_OK";
    case MP_ERROR: return "MP_ERROR";
    case MP_EINVAL: return "MP_EINVAL";
    case MP_ETIMEOUT: return "MP_ETIMEOUT";
    case MP_EBUSY: return "MP_EBUSY";
    case MP_ESIDECAR: return "MP_ESIDECAR";
    case MP_EPROTOCOL: return "MP_EPROTOCOL";
    case MP_ELOST: return "MP_ELOST";
    case MP_ENOTHELD: return "MP_ENOTHELD";
    case MP_ESTATE: return "MP_ESTATE";
    case MP_EBACKEND: return "MP_EBACKEND";
    case MP_ENOMEM: return "MP_ENOMEM";
    case MP_ECANCELED: return "MP_ECANCELED";
    case MP_EVERSION: return "MP_EVERSION";
    case MP_ERANGE: return "MP_ERANGE";
    case MP_EREGISTRY: return "MP_EREGISTRY";
    case MP_EENGINE: return "MP_EENGINE";
    case MP_ESHUTDOWN: return "MP_ESHUTDOWN";
    case MP_ELIMIT: return "MP_ELIMIT";
    default: return "MP_UNKNOWN";
    }
}

void mp_free(void *ptr) { std::free(ptr); }

const char *mp_version(void) { return MP_VERSION_STRING; }

}  // extern "C"
