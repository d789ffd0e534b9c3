/* The keys refresher of a gateway: a thread with its own connection to the ledger
 * database that polls the change stamp (every interval_ms) and, when keys or tenants
 * changed, rebuilds and publishes the key snapshot (cmx_keys_publish) and the tenants
 * snapshot (cmx_tenants_publish). So a key created or revoked on any instance works or
 * stops working on every instance within one interval plus one query. It also seeds the
 * budget accounts of keys and tenants from the ledger once per period (so a restarted
 * gateway remembers what was spent). It never runs on the request path; when the
 * database is down the last snapshots stay, the failure is logged once, and it retries. */
#ifndef CMX_KEYS_REFRESHER_H
#define CMX_KEYS_REFRESHER_H

#include <stddef.h>

#include "config/config.h"

struct cmx_keys_refresher;

/* Opens url, publishes the first snapshots (when the database answers; otherwise empty
 * ones and it keeps trying) and starts the thread. cfg (a reference is taken) supplies the
 * config tenants whose budgets are seeded. 0 and *out; CMX_ENOMEM / CMX_EINVAL (bad url,
 * err). */
int cmx_keys_refresher_start(const char *url, struct cmx_config *cfg, int interval_ms,
                             struct cmx_keys_refresher **out, char *err, size_t err_cap);

/* The config after a reload (a reference is taken). Thread: any. */
void cmx_keys_refresher_set_config(struct cmx_keys_refresher *r, struct cmx_config *cfg);

/* Wakes the process's running refresher for a poll now (the admin API calls it after a
 * write, so that this instance sees its own change at once). No-op without one. Thread:
 * any. */
void cmx_keys_refresher_kick(void);

/* Stops and joins the thread, closes its connection. NULL is ignored. */
void cmx_keys_refresher_stop(struct cmx_keys_refresher *r);

/* One refresh pass, synchronously (the thread's body; tests), serialized with the thread's
 * own passes. Returns 0 when the database answered. */
int cmx_keys_refresher_poll(struct cmx_keys_refresher *r);

#endif
