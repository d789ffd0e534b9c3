/* libFuzzer: retry-after / retry-after-ms / x-should-retry parsing and HTTP-date parsing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "router/retry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *v = malloc(size + 1);
    if (v == NULL)
        return 0;
    memcpy(v, data, size);
    v[size] = '\0';
    struct cmx_http_header h[3] = {
        {"retry-after-ms", 14, v, size},
        {"retry-after", 11, v, size},
        {"x-should-retry", 14, v, size},
    };
    struct cmx_retry_hint hint;
    cmx_retry_hint_parse(h, 3, 1700000000000ull, &hint);
    cmx_retry_hint_parse(h + 1, 2, 0, &hint);
    if (hint.after_ms < -1)
        __builtin_trap();
    uint64_t t;
    cmx_http_date_parse(v, &t);
    free(v);
    return 0;
}
