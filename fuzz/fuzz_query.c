/* libFuzzer target for cmx_query_get(): any query text, a few names; a found value must be a
 * NUL-terminated string no longer than the query. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "http/query.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *names[] = {"at", "cloud", "product", "", "a b"};
    char *q = malloc(size + 1);
    struct cmx_arena a;

    if (q == NULL)
        return 0;
    memcpy(q, data, size);
    q[size] = '\0';
    cmx_arena_init(&a);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *v = NULL;
        if (cmx_query_get(q, names[i], &a, &v) == 0 && strlen(v) > strlen(q))
            abort();
    }
    cmx_arena_reset(&a);
    free(q);
    return 0;
}
