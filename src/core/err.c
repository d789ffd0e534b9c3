#include "core/err.h"

const char *cmx_strerror(int err)
{
    switch (err) {
    case CMX_OK:
        return "ok";
#define XX(code, msg)                                                                              \
    case CMX_E##code:                                                                              \
        return msg;
        CMX_ERRNO_MAP(XX)
#undef XX
    default:
        return "unknown error";
    }
}
