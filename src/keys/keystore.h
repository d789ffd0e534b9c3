/* Virtual keys and admin-defined tenants kept in the ledger database (store.h, migration
 * 2), shared by `cloudmux keys`, the admin API and the refresher that distributes them to
 * every gateway (refresher.h). Keys are only ever created and revoked through the store;
 * a gateway learns of them from its refresher. */
#ifndef CMX_KEYS_KEYSTORE_H
#define CMX_KEYS_KEYSTORE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/buf.h"
#include "keys/registry.h"
#include "ledger/store.h"

struct cmx_arena;

/* What a new key carries besides its tenant. */
struct cmx_key_params {
    const char *tenant;    /* required */
    const char *name;      /* label, "" when NULL */
    int64_t expires_ms;    /* -1: never */
    int rpm, tpm;          /* 0: none */
    int64_t budget_micros; /* -1: none */
};

/* Parses the optional settings as given on the command line or in JSON (NULL: absent):
 * expires an ISO 8601 UTC date or time in the future (a date alone is its 00:00 UTC), rpm
 * and tpm integers 0..2^31-1, budget a decimal amount > 0 (6 decimals at most). Fills p
 * (tenant and name untouched). 0, or CMX_EINVAL with a message naming the setting. */
int cmx_keystore_parse_params(const char *expires, const char *rpm, const char *tpm,
                              const char *budget, int64_t now_ms, struct cmx_key_params *p,
                              char *err, size_t cap);

/* Creates a key for p in store s: the tenant must be defined by cfg or be a live tenant of
 * the store; the name at most 63 bytes. Prints nothing. On success the key text (shown
 * once; never stored) is in key_text and the stored entry in *rec. CMX_EINVAL (bad name,
 * unknown tenant: message in err), CMX_EIO (store failure or CSPRNG failure). */
int cmx_keystore_create(struct cmx_ledger_store *s, const struct cmx_config *cfg,
                        const struct cmx_key_params *p, int64_t now_ms,
                        char key_text[CMX_KEY_TEXT_MAX + 1], struct cmx_key_rec *rec, char *err,
                        size_t cap);

/* Appends the public JSON entry of k (id, object, name, tenant, created, expires, revoked
 * as ISO 8601 or null, status, rpm, tpm, budget as a decimal or null) — never the key or
 * its hash. */
void cmx_keystore_key_json(struct cmx_buf *b, const struct cmx_key_rec *k, int64_t now_ms);

/* Appends the keys of s as a table or (json) {"object":"list","data":[entries]}. */
int cmx_keystore_list(struct cmx_ledger_store *s, bool json, int64_t now_ms, struct cmx_buf *out);

/* Checks a tenant definition (a JSON object in the shape of a config tenants[] entry)
 * with the config's rules. On success *canonical is its compact JSON text (malloc'd) and
 * name its name. CMX_EINVAL with the problems in err. */
int cmx_keystore_tenant_check(const char *json, size_t len, char **canonical, char name[64],
                              char *err, size_t cap);

/* Appends tenant t as JSON in the config's shape (budget amount as a decimal string). */
void cmx_keystore_tenant_json(struct cmx_buf *b, const struct cmx_tenant_cfg *t);

/* ---- the tenants of the store, as an immutable snapshot ---- */

struct cmx_tenant_set {
    atomic_int refcount;
    size_t n;
    struct cmx_config **cfgs; /* one parsed definition each: cfgs[i]->tenants[0] */
};

/* Builds a snapshot of rows (struct cmx_ledger_tenant_row); a definition that no longer
 * parses is skipped with a warning. NULL on allocation failure. */
struct cmx_tenant_set *cmx_tenant_set_build(const struct cmx_ledger_rows *rows);
struct cmx_tenant_set *cmx_tenant_set_ref(struct cmx_tenant_set *s); /* NULL-safe */
void cmx_tenant_set_unref(struct cmx_tenant_set *s);

/* The tenant name of s, or NULL. */
const struct cmx_tenant_cfg *cmx_tenant_set_find(const struct cmx_tenant_set *s, const char *name);

/* The process-wide snapshot (as cmx_keys_publish / cmx_keys_acquire). */
void cmx_tenants_publish(struct cmx_tenant_set *s);
struct cmx_tenant_set *cmx_tenants_acquire(void);

/* How many tenants the published snapshot holds (no reference taken). Thread: any. */
size_t cmx_tenants_stored(void);

/* Resolves a tenant for a request: the published store tenant name (it overrides the
 * config's), else cfg's. A store tenant's snapshot is kept alive until arena is freed.
 * NULL when neither defines it. Thread: any worker; no I/O. */
const struct cmx_tenant_cfg *cmx_tenants_resolve(struct cmx_arena *arena,
                                                 const struct cmx_config *cfg, const char *name);

#endif
