/* The keys refresher (see refresher.h). */
#include "keys/refresher.h"
#include "budget/budget.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/log.h"
#include "keys/keystore.h"
#include "keys/registry.h"
#include "ledger/store.h"
#include "router/health.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A budget account seeded from the ledger, and for which period: an open-addressing hash
 * table by name, so that a pass over many keys stays linear. */
struct seeded {
    char name[96]; /* "" when the slot is free */
    int64_t period_start_ms;
};

struct cmx_keys_refresher {
    char *url;
    int interval_ms;
    struct cmx_ledger_store *store; /* NULL while the database is unreachable */
    int64_t stamp;                  /* of the published snapshots; -1 none yet */
    bool down_logged;               /* the outage was logged */
    uint64_t next_open_ms;          /* when to try connecting again */
    struct cmx_key_set *keys;       /* what was published last (one reference) */
    struct cmx_tenant_set *tenants; /* likewise */
    struct seeded *seeded;          /* cap_seeded slots (a power of two), n_seeded used */
    size_t n_seeded, cap_seeded;
    int64_t seeded_day_ms;   /* the UTC day of the last seeding pass (periods start at 00:00) */
    atomic_bool cfg_changed; /* a reload since the last seeding pass */
    pthread_mutex_t mu;      /* guards cfg, cfg_changed and stop */
    pthread_cond_t cv;
    pthread_mutex_t poll_mu; /* one poll at a time: the thread's and a caller's (tests) */
    struct cmx_config *cfg;
    bool stop;
    pthread_t thread;
    bool started;
};

static void down(struct cmx_keys_refresher *r, const char *why)
{
    if (r->store != NULL) {
        r->store->ops->close(r->store);
        r->store = NULL;
    }
    r->next_open_ms = cmx_mono_ms() + 1000;
    if (!r->down_logged)
        cmx_log(CMX_LOG_WARN,
                "keys: the ledger database is unreachable (%s); keeping the last keys and "
                "tenants, retrying every second",
                why);
    r->down_logged = true;
}

static size_t name_hash(const char *name)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const char *p = name; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return (size_t)h;
}

/* The slot of name in the seeded table: its own, or the free one it would take (the table
 * grows first when half full). NULL on allocation failure. */
static struct seeded *find_slot(struct cmx_keys_refresher *r, const char *name)
{
    if (2 * (r->n_seeded + 1) > r->cap_seeded) {
        size_t nc = r->cap_seeded ? r->cap_seeded * 2 : 64;
        struct seeded *ns = calloc(nc, sizeof(*ns));
        if (ns == NULL)
            return NULL;
        for (size_t i = 0; i < r->cap_seeded; i++) {
            if (r->seeded[i].name[0] == '\0')
                continue;
            size_t j = name_hash(r->seeded[i].name) & (nc - 1);
            while (ns[j].name[0] != '\0')
                j = (j + 1) & (nc - 1);
            ns[j] = r->seeded[i];
        }
        free(r->seeded);
        r->seeded = ns;
        r->cap_seeded = nc;
    }
    size_t j = name_hash(name) & (r->cap_seeded - 1);
    while (r->seeded[j].name[0] != '\0' && strncmp(r->seeded[j].name, name, 95) != 0)
        j = (j + 1) & (r->cap_seeded - 1);
    return &r->seeded[j];
}

/* Seeds account name (limit, period) from the ledger once per period: the budget's quota
 * bucket starts from at least what the ledger recorded for the tenant / key in the period
 * so far (cmx_budget_seed; src/api/admit.c reads it). */
static int seed(struct cmx_keys_refresher *r, const char *name, const char *tenant,
                const char *key_id, int64_t limit, enum cmx_period period, int64_t now_ms)
{
    int64_t start, end;
    cmx_period_bounds(period, now_ms, &start, &end);
    struct seeded *slot = find_slot(r, name);
    if (slot == NULL)
        return CMX_ENOMEM;
    if (slot->name[0] != '\0' && slot->period_start_ms == start)
        return 0;
    int64_t sum = 0;
    if (r->store->ops->spent(r->store, tenant, key_id, start, end, &sum) != 0)
        return CMX_EIO;
    (void)limit;
    if (cmx_budget_seed(tenant != NULL ? "t" : "k", tenant != NULL ? tenant : key_id, start, sum) !=
        0)
        return CMX_ENOMEM;
    if (slot->name[0] == '\0') {
        r->n_seeded++;
        snprintf(slot->name, sizeof(slot->name), "%s", name);
    }
    slot->period_start_ms = start;
    return 0;
}

static enum cmx_period period_of(const struct cmx_tenant_cfg *t)
{
    int p = t != NULL ? cmx_period_parse(t->budget_period) : -1;
    return p < 0 ? CMX_PERIOD_MONTH : (enum cmx_period)p;
}

/* Seeds every budget of keys ks, the store's tenants ts and cfg's tenants (as admit.c names
 * and sizes them). */
static int seed_all(struct cmx_keys_refresher *r, const struct cmx_key_set *ks,
                    const struct cmx_tenant_set *ts, const struct cmx_config *cfg)
{
    int64_t now = (int64_t)cmx_clock_now_ms();
    char name[96];
    for (size_t i = 0; ts != NULL && i < ts->n; i++) {
        const struct cmx_tenant_cfg *t = &ts->cfgs[i]->tenants[0];
        snprintf(name, sizeof(name), "t:%s", t->name);
        if (t->budget_micros >= 0 &&
            seed(r, name, t->name, NULL, t->budget_micros, period_of(t), now) != 0)
            return CMX_EIO;
    }
    for (size_t i = 0; cfg != NULL && i < cfg->n_tenants; i++) {
        const struct cmx_tenant_cfg *t = &cfg->tenants[i];
        snprintf(name, sizeof(name), "t:%s", t->name ? t->name : "");
        if (t->name != NULL && t->budget_micros >= 0 && cmx_tenant_set_find(ts, t->name) == NULL &&
            seed(r, name, t->name, NULL, t->budget_micros, period_of(t), now) != 0)
            return CMX_EIO;
    }
    for (size_t i = 0; ks != NULL && i < ks->n; i++) {
        const struct cmx_key_rec *k = &ks->recs[i];
        if (k->budget_micros < 0 || k->revoked_ms >= 0)
            continue;
        const struct cmx_tenant_cfg *t = cmx_tenant_set_find(ts, k->tenant);
        if (t == NULL && cfg != NULL)
            t = cmx_config_find_tenant(cfg, k->tenant);
        snprintf(name, sizeof(name), "k:%s", k->id);
        if (seed(r, name, NULL, k->id, k->budget_micros, period_of(t), now) != 0)
            return CMX_EIO;
    }
    return 0;
}

static int poll_locked(struct cmx_keys_refresher *r);

int cmx_keys_refresher_poll(struct cmx_keys_refresher *r)
{
    /* the store connection and the published state are the poll's own: never two at once */
    pthread_mutex_lock(&r->poll_mu);
    int rc = poll_locked(r);
    pthread_mutex_unlock(&r->poll_mu);
    return rc;
}

static int poll_locked(struct cmx_keys_refresher *r)
{
    char err[512] = "";
    if (r->store == NULL) {
        if (cmx_mono_ms() < r->next_open_ms)
            return CMX_EIO;
        if (cmx_ledger_store_open(r->url, &r->store, err, sizeof(err)) != 0) {
            r->store = NULL;
            down(r, err);
            return CMX_EIO;
        }
    }
    int64_t stamp = r->store->ops->stamp(r->store);
    if (stamp < 0) {
        down(r, "the change stamp cannot be read");
        return CMX_EIO;
    }
    if (stamp != r->stamp) {
        struct cmx_ledger_rows kr, tr;
        if (r->store->ops->keys_load(r->store, &kr) != 0) {
            down(r, "the keys cannot be read");
            return CMX_EIO;
        }
        if (r->store->ops->tenants_load(r->store, &tr) != 0) {
            free(kr.rows);
            down(r, "the tenants cannot be read");
            return CMX_EIO;
        }
        struct cmx_key_set *ks = cmx_key_set_new(kr.rows, kr.n);
        struct cmx_tenant_set *ts = cmx_tenant_set_build(&tr);
        free(kr.rows);
        cmx_ledger_tenant_rows_free(&tr);
        if (ks == NULL || ts == NULL) {
            cmx_key_set_unref(ks);
            cmx_tenant_set_unref(ts);
            return CMX_ENOMEM;
        }
        /* budgets first, so that no request of a new key finds its account unseeded */
        pthread_mutex_lock(&r->mu);
        struct cmx_config *cfg = cmx_config_ref(r->cfg);
        r->cfg_changed = false;
        pthread_mutex_unlock(&r->mu);
        r->seeded_day_ms = cmx_clock_day_start((int64_t)cmx_clock_now_ms());
        if (seed_all(r, ks, ts, cfg) != 0)
            r->seeded_day_ms = -1; /* again at the next poll */
        cmx_config_unref(cfg);
        cmx_tenants_publish(cmx_tenant_set_ref(ts));
        cmx_keys_publish(cmx_key_set_ref(ks));
        cmx_key_set_unref(r->keys);
        cmx_tenant_set_unref(r->tenants);
        r->keys = ks;
        r->tenants = ts;
        if (r->stamp >= 0 || ks->n > 0 || ts->n > 0)
            cmx_log(CMX_LOG_INFO, "keys: %zu key%s and %zu stored tenant%s loaded", ks->n,
                    ks->n == 1 ? "" : "s", ts->n, ts->n == 1 ? "" : "s");
        r->stamp = stamp;
    } else if (atomic_load(&r->cfg_changed) ||
               cmx_clock_day_start((int64_t)cmx_clock_now_ms()) != r->seeded_day_ms) {
        /* a reloaded config or a new day (every period starts at 00:00 UTC): accounts not
         * seeded for their current period yet */
        pthread_mutex_lock(&r->mu);
        struct cmx_config *cfg = cmx_config_ref(r->cfg);
        r->cfg_changed = false;
        pthread_mutex_unlock(&r->mu);
        r->seeded_day_ms = cmx_clock_day_start((int64_t)cmx_clock_now_ms());
        if (seed_all(r, r->keys, r->tenants, cfg) != 0) {
            r->seeded_day_ms = -1; /* again at the next poll */
            cmx_config_unref(cfg);
            down(r, "usage cannot be read");
            return CMX_EIO;
        }
        cmx_config_unref(cfg);
    }
    if (r->down_logged)
        cmx_log(CMX_LOG_INFO, "keys: the ledger database is reachable again");
    r->down_logged = false;
    return 0;
}

/* The running refresher of the process (serve starts one), for cmx_keys_refresher_kick. */
static pthread_mutex_t active_mu = PTHREAD_MUTEX_INITIALIZER;
static struct cmx_keys_refresher *active;

void cmx_keys_refresher_kick(void)
{
    pthread_mutex_lock(&active_mu);
    if (active != NULL) {
        pthread_mutex_lock(&active->mu);
        pthread_cond_signal(&active->cv);
        pthread_mutex_unlock(&active->mu);
    }
    pthread_mutex_unlock(&active_mu);
}

static void *run(void *arg)
{
    struct cmx_keys_refresher *r = arg;
    pthread_mutex_lock(&r->mu);
    while (!r->stop) {
        pthread_mutex_unlock(&r->mu);
        cmx_keys_refresher_poll(r);
        pthread_mutex_lock(&r->mu);
        if (r->stop)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)r->interval_ms * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&r->cv, &r->mu, &ts);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

int cmx_keys_refresher_start(const char *url, struct cmx_config *cfg, int interval_ms,
                             struct cmx_keys_refresher **out, char *err, size_t err_cap)
{
    *out = NULL;
    if (cmx_ledger_store_for(url) == NULL) {
        snprintf(err, err_cap, "keys: unsupported ledger url");
        return CMX_EINVAL;
    }
    struct cmx_keys_refresher *r = calloc(1, sizeof(*r));
    if (r == NULL || (r->url = strdup(url)) == NULL) {
        free(r);
        return CMX_ENOMEM;
    }
    r->interval_ms = interval_ms > 0 ? interval_ms : 250;
    r->stamp = -1;
    r->cfg = cmx_config_ref(cfg);
    pthread_mutex_init(&r->mu, NULL);
    pthread_mutex_init(&r->poll_mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    if (cmx_keys_refresher_poll(r) != 0) {
        /* no database yet: an empty snapshot, so that auth decisions are made */
        r->keys = cmx_key_set_new(NULL, 0);
        cmx_keys_publish(cmx_key_set_ref(r->keys));
    }
    if (pthread_create(&r->thread, NULL, run, r) != 0) {
        cmx_keys_refresher_stop(r);
        return CMX_ENOMEM;
    }
    r->started = true;
    pthread_mutex_lock(&active_mu);
    if (active == NULL)
        active = r;
    pthread_mutex_unlock(&active_mu);
    *out = r;
    return 0;
}

void cmx_keys_refresher_set_config(struct cmx_keys_refresher *r, struct cmx_config *cfg)
{
    if (r == NULL)
        return;
    cmx_config_ref(cfg);
    pthread_mutex_lock(&r->mu);
    struct cmx_config *old = r->cfg;
    r->cfg = cfg;
    r->cfg_changed = true;
    pthread_mutex_unlock(&r->mu);
    cmx_config_unref(old);
}

void cmx_keys_refresher_stop(struct cmx_keys_refresher *r)
{
    if (r == NULL)
        return;
    pthread_mutex_lock(&active_mu);
    if (active == r)
        active = NULL;
    pthread_mutex_unlock(&active_mu);
    pthread_mutex_lock(&r->mu);
    r->stop = true;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (r->started)
        pthread_join(r->thread, NULL);
    if (r->store != NULL)
        r->store->ops->close(r->store);
    cmx_key_set_unref(r->keys);
    cmx_tenant_set_unref(r->tenants);
    cmx_config_unref(r->cfg);
    pthread_mutex_destroy(&r->mu);
    pthread_mutex_destroy(&r->poll_mu);
    pthread_cond_destroy(&r->cv);
    free(r->seeded);
    free(r->url);
    free(r);
}
