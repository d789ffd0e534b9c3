/* Query strings of request targets (application/x-www-form-urlencoded, as browsers and
 * curl --data-urlencode write them). */
#ifndef CMX_HTTP_QUERY_H
#define CMX_HTTP_QUERY_H

#include <stddef.h>

#include "core/arena.h"

/* The decoded value of the first parameter called name in query (the text after '?', NUL-
 * terminated, without the '?'): '+' becomes a space and %XX its byte. A parameter without
 * '=' has the value "". Returns 0 with *value a NUL-terminated string in the arena;
 * CMX_ENOTFOUND when absent; CMX_EINVAL when the value has a bad %-escape or decodes to a
 * NUL byte; CMX_ENOMEM. Thread: any. */
int cmx_query_get(const char *query, const char *name, struct cmx_arena *a, const char **value);

/* Percent-decodes a path segment in place (NUL-terminated; '+' stays '+', a '%' not followed
 * by two hex digits stays as it is). Returns the decoded length. Thread: any. */
size_t cmx_percent_decode(char *s);

#endif
