/* FNV-1a (64-bit), the hash of the small in-memory tables (rate-limit buckets, budget
 * spend cache, the ledger's dimension ids) and of Vertex's stable tool-call ids. */
#ifndef CMX_CORE_HASH_H
#define CMX_CORE_HASH_H

#include <stddef.h>
#include <stdint.h>

#define CMX_FNV1A_INIT 1469598103934665603ull /* the offset basis: start h here */

/* h with the n bytes at p folded in (FNV-1a); chain calls to hash several pieces. */
static inline uint64_t cmx_fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

#endif
