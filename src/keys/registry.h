/* The virtual keys a gateway accepts, as an immutable snapshot sorted by hash: workers look
 * a presented key up without locks, while a refresher (reading the key store) publishes a
 * new snapshot whenever keys are created, revoked or expire. Revoking a key on one instance
 * reaches every instance at its next refresh. */
#ifndef CMX_KEYS_REGISTRY_H
#define CMX_KEYS_REGISTRY_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "keys/keys.h"

/* One key as stored (never the key itself). */
struct cmx_key_rec {
    char id[CMX_KEY_ID_LEN + 1];     /* public id, "key_..." */
    char hash[CMX_KEY_HASH_HEX + 1]; /* SHA-256 of the key, lowercase hex */
    char name[64];                   /* label given at creation ("" when none) */
    char tenant[64];                 /* the tenant it belongs to */
    int64_t created_ms;              /* unix ms */
    int64_t expires_ms;              /* unix ms after which it stops working; -1: never */
    int64_t revoked_ms;              /* unix ms it was revoked; -1: live */
    int rpm, tpm;                    /* per-key limits; 0: none (the tenant's still apply) */
    int64_t budget_micros;           /* per-key budget per the tenant's period; -1: none */
};

/* An immutable, refcounted set of keys. */
struct cmx_key_set {
    atomic_int refcount;
    size_t n;
    struct cmx_key_rec *recs; /* sorted by hash */
};

/* Builds a set from a copy of recs[0..n) (any order; later duplicates of a hash replace
 * earlier ones). NULL on allocation failure. refcount 1. */
struct cmx_key_set *cmx_key_set_new(const struct cmx_key_rec *recs, size_t n);

/* Reference counting; unref(NULL) is ignored. Thread: any. */
struct cmx_key_set *cmx_key_set_ref(struct cmx_key_set *s);
void cmx_key_set_unref(struct cmx_key_set *s);

/* Why a presented key was refused. */
enum cmx_key_verdict {
    CMX_KEY_OK = 0,
    CMX_KEY_UNKNOWN, /* no such key (or not a key's shape) */
    CMX_KEY_REVOKED, /* revoked */
    CMX_KEY_EXPIRED, /* past its expiry */
};

/* Looks the presented key[0..len) up in s at now_ms: hashes it, binary-searches the hash,
 * and confirms with a constant-time comparison. *rec is set for OK, REVOKED and EXPIRED.
 * Thread: any; no allocation. */
enum cmx_key_verdict cmx_key_set_check(const struct cmx_key_set *s, const char *key, size_t len,
                                       int64_t now_ms, const struct cmx_key_rec **rec);

/* The process-wide current set: publish swaps it in (taking over the caller's reference)
 * and drops the old one; acquire returns a new reference to the current set (NULL when
 * none was published). Thread: any. */
void cmx_keys_publish(struct cmx_key_set *s);
struct cmx_key_set *cmx_keys_acquire(void);

#endif
