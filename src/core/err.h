/* Error codes shared by every module: 0 is success, a negative enum cmx_err a failure.
 * One X-macro list feeds both the enum and cmx_strerror() (libuv's UV_ERRNO_MAP).
 * Errors become HTTP statuses only at the edge (src/api/). */
#ifndef CMX_CORE_ERR_H
#define CMX_CORE_ERR_H

#define CMX_ERRNO_MAP(XX)                                                                          \
    XX(NOMEM, "out of memory")                                                                     \
    XX(INVAL, "invalid argument")                                                                  \
    XX(JSON, "malformed JSON")                                                                     \
    XX(TOOBIG, "too large")                                                                        \
    XX(NOTFOUND, "not found")                                                                      \
    XX(CONFIG, "invalid configuration")                                                            \
    XX(IO, "I/O error")                                                                            \
    XX(CONNECT, "could not connect to upstream")                                                   \
    XX(TLS, "TLS handshake with upstream failed")                                                  \
    XX(TIMEOUT, "upstream timed out")                                                              \
    XX(UPSTREAM, "upstream protocol error")                                                        \
    XX(REDIRECT, "upstream answered with a redirect (check its base_url)")                         \
    XX(RESET, "upstream connection reset")                                                         \
    XX(CANCELED, "canceled")                                                                       \
    XX(AUTH, "could not obtain an access token for the upstream")                                  \
    XX(INTERNAL, "internal error")

enum cmx_err {
    CMX_OK = 0,
#define XX(code, _) CMX_E##code,
    CMX_E__FIRST = -1000,
    CMX_ERRNO_MAP(XX)
#undef XX
};

/* Returns a static, human-readable string for err (0 or a negative enum cmx_err). Never NULL. */
const char *cmx_strerror(int err);

#endif
