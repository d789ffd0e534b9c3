/* The ledger: record arithmetic, the writer thread and its queue, the spool file. */
#include "ledger/ledger.h"
#include "core/fmt.h"
#include "ledger/store.h"
#include "agreements/agreements.h"
#include "config/config.h"
#include "core/clock.h"
#include "core/decimal.h"
#include "core/err.h"
#include "core/log.h"
#include "providers/provider.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MICRO        INT64_C(1000000)
#define BATCH_MAX    4096 /* records per transaction in batched mode */
#define RETRY_MS     1000 /* reconnect attempts while the store is down */
#define GATHER_MS    20   /* batched: how long the writer lets a small batch grow */
#define GATHER_MIN   1024 /* ... unless this many records are already queued */
#define SPOOL_MAX_LN 65536

/* ---- arithmetic ------------------------------------------------------------------------- */

int64_t cmx_ledger_div_half_even(__int128 n, int64_t d)
{
    bool neg = n < 0;
    unsigned __int128 a = neg ? (unsigned __int128)(-(n + 1)) + 1 : (unsigned __int128)n;
    unsigned __int128 q = a / (unsigned __int128)d, r = a % (unsigned __int128)d;
    unsigned __int128 twice = r * 2;
    if (twice > (unsigned __int128)d || (twice == (unsigned __int128)d && (q & 1)))
        q++;
    if (q > (unsigned __int128)INT64_MAX)
        return neg ? -INT64_MAX : INT64_MAX;
    return neg ? -(int64_t)q : (int64_t)q;
}

int64_t cmx_ledger_revenue(const struct cmx_price *p, int64_t prompt, int64_t completion,
                           int64_t cached)
{
    if (prompt < 0)
        prompt = 0;
    if (completion < 0)
        completion = 0;
    if (cached < 0)
        cached = 0;
    if (cached > prompt)
        cached = prompt;
    int64_t cin = p->cached_input_per_mtok >= 0 ? p->cached_input_per_mtok : p->input_per_mtok;
    __int128 sum = (__int128)(prompt - cached) * p->input_per_mtok + (__int128)cached * cin +
                   (__int128)completion * p->output_per_mtok;
    return cmx_ledger_div_half_even(sum, MICRO);
}

int64_t cmx_ledger_share(int64_t revenue_micros, int64_t rate_ppm)
{
    return cmx_ledger_div_half_even((__int128)revenue_micros * rate_ppm, MICRO);
}

void cmx_ledger_cap_split(int64_t amount, bool has_cap, int64_t cap, int64_t prev, int64_t *accrued,
                          int64_t *over)
{
    if (amount < 0)
        amount = 0;
    if (!has_cap) {
        *accrued = amount;
        *over = 0;
        return;
    }
    int64_t room = cap - prev;
    if (room < 0)
        room = 0;
    *accrued = amount < room ? amount : room;
    *over = amount - *accrued;
}

int cmx_ledger_parse_rate(const char *s, size_t len, int64_t *ppm)
{
    int64_t v;
    if (cmx_decimal_parse(s, len, 6, &v) != 0 || v < 0 || v > MICRO)
        return CMX_EINVAL;
    *ppm = v;
    return 0;
}

/* ---- records ---------------------------------------------------------------------------- */

/* Length of s (NULL: 0) cut to max bytes. */
static size_t cut_len(const char *s, size_t max)
{
    return s != NULL ? strnlen(s, max) : 0;
}

/* Copies len bytes of s and a NUL to *o; returns the copy and advances *o. */
static const char *put_copy(char **o, const char *s, size_t len)
{
    char *d = *o;
    if (len > 0)
        memcpy(d, s, len);
    d[len] = '\0';
    *o = d + len + 1;
    return d;
}

#define NAME_MAX_LEN (CMX_LEDGER_NAME - 1)

struct cmx_ledger_rec *cmx_ledger_rec_new(const struct cmx_ledger_rec *t,
                                          const struct cmx_ledger_accrual *acc, size_t n_acc)
{
    enum { REC_STRS = 9, MAX_STRS = REC_STRS + 3 * CMX_LEDGER_MAX_SHARES };
    if (n_acc > CMX_LEDGER_MAX_SHARES)
        n_acc = CMX_LEDGER_MAX_SHARES;
    /* every string (the record's, then each accrual's three) with its cut length, measured
     * once; then one block for the struct, the accruals and the strings */
    const char *src[MAX_STRS] = {t->request_id, t->model,      t->product, t->provider, t->cloud,
                                 t->region,     t->agreements, t->tenant,  t->key_id};
    size_t max[MAX_STRS] = {NAME_MAX_LEN,     NAME_MAX_LEN, NAME_MAX_LEN,
                            NAME_MAX_LEN,     NAME_MAX_LEN, NAME_MAX_LEN,
                            2 * NAME_MAX_LEN, 63,           31};
    size_t ns = REC_STRS;
    for (size_t i = 0; i < n_acc; i++) {
        src[ns] = acc[i].agreement, max[ns++] = NAME_MAX_LEN;
        src[ns] = acc[i].payee, max[ns++] = NAME_MAX_LEN;
        src[ns] = acc[i].currency ? acc[i].currency : "USD", max[ns++] = 7;
    }
    size_t len[MAX_STRS], total = 0;
    for (size_t i = 0; i < ns; i++)
        total += (len[i] = cut_len(src[i], max[i])) + 1;
    size_t head = sizeof(*t) + n_acc * sizeof(t->acc[0]);
    struct cmx_ledger_rec *r = malloc(head + total);
    if (r == NULL)
        return NULL;
    memcpy(r, t, sizeof(*t));
    r->next = NULL;
    r->record_id[sizeof(r->record_id) - 1] = '\0';
    r->n_acc = n_acc;
    if (n_acc > 0)
        memcpy(r->acc, acc, n_acc * sizeof(acc[0]));
    const char **dst[MAX_STRS] = {&r->request_id, &r->model,  &r->product,
                                  &r->provider,   &r->cloud,  &r->region,
                                  &r->agreements, &r->tenant, &r->key_id};
    for (size_t i = 0, k = REC_STRS; i < n_acc; i++) {
        dst[k++] = &r->acc[i].agreement;
        dst[k++] = &r->acc[i].payee;
        dst[k++] = &r->acc[i].currency;
    }
    char *o = (char *)r + head;
    for (size_t i = 0; i < ns; i++)
        *dst[i] = put_copy(&o, src[i], len[i]);
    /* dst[1..6] were copied in order: the dimensions are one span (the store's id key) */
    r->dims_len = (size_t)(r->agreements + len[6] + 1 - r->model);
    return r;
}

/* Per-process part of record ids (random), and a counter. */
static _Atomic uint64_t id_salt;
static atomic_uint id_seq;

void cmx_ledger_record_id(int64_t ts_ms, char *buf, size_t cap)
{
    uint64_t salt = atomic_load(&id_salt);
    if (salt == 0) {
        uint64_t s = 0;
        int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        if (fd < 0 || read(fd, &s, sizeof(s)) != (ssize_t)sizeof(s))
            s = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
        if (fd >= 0)
            close(fd);
        s |= 1;
        uint64_t zero = 0;
        if (!atomic_compare_exchange_strong(&id_salt, &zero, s))
            s = zero;
        salt = s;
    }
    unsigned seq = atomic_fetch_add(&id_seq, 1);
    /* "%012llx%016llx%08x" without printf (one per request, on a worker) */
    char id[37];
    cmx_fmt_hex(cmx_fmt_hex(cmx_fmt_hex(id, (uint64_t)ts_ms, 12), salt, 16), seq, 8);
    if (cap == 0)
        return;
    size_t n = cap > 36 ? 36 : cap - 1;
    memcpy(buf, id, n);
    buf[n] = '\0';
}

struct cmx_ledger_rec *cmx_ledger_prepare(const struct cmx_ledger_input *in)
{
    const struct cmx_config *cfg = in->cfg;
    const struct cmx_deployment_cfg *d = in->dep;
    const char *product = NULL;
    struct cmx_agr_share_view views[CMX_LEDGER_MAX_SHARES];
    size_t n = 0;

    int64_t pi =
        cfg != NULL && in->model != NULL ? cmx_agreements_model_product(cfg, in->model) : -1;
    if (pi >= 0)
        product = cfg->agreements->products[pi].name;
    if (cfg != NULL && cfg->agreements != NULL && d != NULL)
        n = cmx_agreements_revenue_shares(cfg->agreements, in->at_ms, d->provider->cloud, product,
                                          views, CMX_LEDGER_MAX_SHARES);
    if (n > CMX_LEDGER_MAX_SHARES) {
        cmx_log(CMX_LOG_WARN, "ledger: request %s falls under %zu revenue shares; recording %d",
                in->request_id, n, CMX_LEDGER_MAX_SHARES);
        n = CMX_LEDGER_MAX_SHARES;
    }
    struct cmx_ledger_rec t = {.request_id = in->request_id,
                               .ts_ms = in->at_ms,
                               .model = in->model ? in->model->name : NULL,
                               .product = product,
                               .agreements = in->agreements,
                               .tenant = in->tenant,
                               .key_id = in->key_id};
    struct cmx_ledger_rec *r = &t;
    cmx_ledger_record_id(r->ts_ms, r->record_id, sizeof(r->record_id));
    if (d != NULL) {
        r->provider = d->provider->name;
        r->cloud = d->provider->cloud;
        r->region = d->provider->region;
    }
    const struct cmx_usage *u = in->usage;
    if (u != NULL && u->reported) {
        /* a count the upstream left out is 0 */
        r->prompt_tokens = u->prompt_tokens > 0 ? u->prompt_tokens : 0;
        r->completion_tokens = u->completion_tokens > 0 ? u->completion_tokens : 0;
        r->cached_tokens = u->cached_tokens > 0 ? u->cached_tokens : 0;
        r->reasoning_tokens = u->reasoning_tokens > 0 ? u->reasoning_tokens : 0;
    } else {
        /* no usage from the upstream: estimated, flagged (the completion from the generated
         * text alone: a stream's framing or an embedding is no output) */
        r->estimated = true;
        cmx_ledger_estimate(in->request_bytes, in->output_text_bytes, &r->prompt_tokens,
                            &r->completion_tokens);
    }
    r->stream = in->stream;
    r->status = in->status;
    r->latency_ms = (int64_t)(in->latency_us / 1000);
    if (d != NULL && d->has_price)
        r->revenue_micros =
            cmx_ledger_revenue(&d->price, r->prompt_tokens, r->completion_tokens, r->cached_tokens);
    if (d != NULL && d->has_cost)
        r->cost_micros =
            cmx_ledger_revenue(&d->cost, r->prompt_tokens, r->completion_tokens, r->cached_tokens);
    struct cmx_ledger_accrual acc[CMX_LEDGER_MAX_SHARES];
    for (size_t i = 0; i < n; i++) {
        struct cmx_ledger_accrual *a = &acc[i];
        const struct cmx_agr_revshare *tm = views[i].term;
        a->agreement = views[i].agreement;
        a->payee = tm->payee;
        a->currency = tm->currency ? tm->currency : "USD";
        a->term = (int)views[i].index;
        a->rate_ppm = tm->rate_ppm;
        a->has_cap = tm->has_cap;
        a->cap_micros = tm->has_cap ? tm->cap_micros : 0;
        a->amount_micros = cmx_ledger_share(r->revenue_micros, tm->rate_ppm);
    }
    return cmx_ledger_rec_new(&t, acc, n);
}

/* ---- spool file: one record per line, tab-separated, \t \n \\ escaped ------------------ */

static void put_str(struct cmx_buf *b, const char *s)
{
    cmx_buf_puts(b, "\t");
    for (; *s; s++) {
        if (*s == '\t')
            cmx_buf_puts(b, "\\t");
        else if (*s == '\n')
            cmx_buf_puts(b, "\\n");
        else if (*s == '\\')
            cmx_buf_puts(b, "\\\\");
        else
            cmx_buf_append(b, s, 1);
    }
}

static void put_int(struct cmx_buf *b, int64_t v)
{
    cmx_buf_printf(b, "\t%lld", (long long)v);
}

void cmx_ledger_spool_line(struct cmx_buf *b, const struct cmx_ledger_rec *r)
{
    cmx_buf_puts(b, "R1");
    put_str(b, r->record_id);
    put_str(b, r->request_id);
    put_int(b, r->ts_ms);
    put_str(b, r->model);
    put_str(b, r->product);
    put_str(b, r->provider);
    put_str(b, r->cloud);
    put_str(b, r->region);
    put_str(b, r->agreements);
    put_int(b, r->prompt_tokens);
    put_int(b, r->completion_tokens);
    put_int(b, r->cached_tokens);
    put_int(b, r->reasoning_tokens);
    put_int(b, r->estimated);
    put_int(b, r->stream);
    put_int(b, r->status);
    put_int(b, r->latency_ms);
    put_int(b, r->revenue_micros);
    put_int(b, r->cost_micros);
    put_int(b, (int64_t)r->n_acc);
    for (size_t i = 0; i < r->n_acc; i++) {
        const struct cmx_ledger_accrual *a = &r->acc[i];
        put_str(b, a->agreement);
        put_str(b, a->payee);
        put_str(b, a->currency);
        put_int(b, a->term);
        put_int(b, a->rate_ppm);
        put_int(b, a->has_cap);
        put_int(b, a->cap_micros);
        put_int(b, a->amount_micros);
    }
    put_str(b, r->tenant);
    put_str(b, r->key_id);
    cmx_buf_puts(b, "\n");
}

struct fields {
    char *f[23 + 8 * CMX_LEDGER_MAX_SHARES];
    size_t n;
    size_t i;
};

/* Splits line (modified in place) at tabs and unescapes each field. */
static void split(char *line, struct fields *fs)
{
    fs->n = fs->i = 0;
    char *s = line;
    for (;;) {
        if (fs->n == sizeof(fs->f) / sizeof(fs->f[0]))
            return;
        fs->f[fs->n++] = s;
        char *w = s, *r = s;
        while (*r && *r != '\t') {
            if (*r == '\\' && r[1]) {
                r++;
                *w++ = *r == 't' ? '\t' : *r == 'n' ? '\n' : *r;
                r++;
            } else {
                *w++ = *r++;
            }
        }
        bool more = *r == '\t';
        *w = '\0';
        if (!more)
            return;
        s = r + 1;
    }
}

static bool get_str(struct fields *fs, const char **dst)
{
    if (fs->i >= fs->n)
        return false;
    *dst = fs->f[fs->i++];
    return true;
}

static bool get_int(struct fields *fs, int64_t *v)
{
    if (fs->i >= fs->n)
        return false;
    char *end;
    errno = 0;
    long long x = strtoll(fs->f[fs->i++], &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *v = x;
    return true;
}

struct cmx_ledger_rec *cmx_ledger_spool_parse(char *line)
{
    struct fields fs;
    split(line, &fs);
    if (fs.n < 21 || strcmp(fs.f[0], "R1") != 0)
        return NULL;
    int64_t nacc;
    fs.i = 20;
    if (!get_int(&fs, &nacc) || nacc < 0 || nacc > CMX_LEDGER_MAX_SHARES ||
        (fs.n != 21 + 8 * (size_t)nacc && fs.n != 23 + 8 * (size_t)nacc))
        return NULL;
    /* parsed into a template pointing into line, then made compact */
    struct cmx_ledger_rec t = {0}, *r = &t;
    struct cmx_ledger_accrual acc[CMX_LEDGER_MAX_SHARES];
    const char *rid = NULL;
    int64_t v[11];
    fs.i = 1;
    bool ok = get_str(&fs, &rid) && rid[0] != '\0' && strlen(rid) < sizeof(r->record_id) &&
              get_str(&fs, &r->request_id) && get_int(&fs, &r->ts_ms) && get_str(&fs, &r->model) &&
              get_str(&fs, &r->product) && get_str(&fs, &r->provider) && get_str(&fs, &r->cloud) &&
              get_str(&fs, &r->region) && get_str(&fs, &r->agreements);
    for (int i = 0; ok && i < 11; i++)
        ok = get_int(&fs, &v[i]);
    if (!ok)
        return NULL;
    memcpy(r->record_id, rid, strlen(rid) + 1);
    r->prompt_tokens = v[0];
    r->completion_tokens = v[1];
    r->cached_tokens = v[2];
    r->reasoning_tokens = v[3];
    r->estimated = v[4] != 0;
    r->stream = v[5] != 0;
    r->status = (int)v[6];
    r->latency_ms = v[7];
    r->revenue_micros = v[8];
    r->cost_micros = v[9];
    fs.i = 21;
    for (size_t i = 0; ok && i < (size_t)nacc; i++) {
        struct cmx_ledger_accrual *a = &acc[i];
        int64_t term = 0, has_cap = 0;
        ok = get_str(&fs, &a->agreement) && get_str(&fs, &a->payee) && get_str(&fs, &a->currency) &&
             get_int(&fs, &term) && get_int(&fs, &a->rate_ppm) && get_int(&fs, &has_cap) &&
             get_int(&fs, &a->cap_micros) && get_int(&fs, &a->amount_micros);
        a->term = (int)term;
        a->has_cap = has_cap != 0;
    }
    if (ok && fs.i + 2 == fs.n) /* tenant and key id (absent in older lines) */
        ok = get_str(&fs, &r->tenant) && get_str(&fs, &r->key_id);
    if (!ok)
        return NULL;
    return cmx_ledger_rec_new(&t, acc, (size_t)nacc);
}

/* ---- the writer ------------------------------------------------------------------------- */

struct cmx_ledger {
    pthread_mutex_t mu;          /* guards the queue fields below */
    pthread_cond_t wake;         /* writer: something queued, or stop */
    pthread_cond_t full;         /* writer while gathering: GATHER_MIN queued, flush or stop */
    pthread_cond_t done;         /* flushers: processed moved */
    struct cmx_ledger_rec *head; /* queued records, oldest first */
    struct cmx_ledger_rec *tail; /* last queued */
    uint64_t submitted;          /* records queued so far */
    size_t queued;               /* records in the queue now */
    uint64_t processed;          /* records committed or spooled so far */
    bool stop;                   /* drain and exit */
    int flushing;                /* callers waiting in cmx_ledger_flush (no gathering) */
    pthread_t thread;            /* the writer */
    /* writer-only state */
    char *url;   /* the store's URL (may hold a password: never logged) */
    char *spool; /* spool file path */
    enum cmx_ledger_durability durability;
    struct cmx_ledger_store *store; /* NULL while unreachable */
    int64_t next_try_ms;            /* monotonic ms of the next reconnect attempt */
    atomic_uint_fast64_t committed; /* records written to the store */
    atomic_uint_fast64_t spooled;   /* records appended to the spool */
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Appends recs to the spool file and syncs it. Returns 0 or CMX_EIO. */
static int spool_append(struct cmx_ledger *l, struct cmx_ledger_rec *const *recs, size_t n)
{
    struct cmx_buf b;
    cmx_buf_init(&b, (size_t)1 << 30);
    for (size_t i = 0; i < n; i++)
        cmx_ledger_spool_line(&b, recs[i]);
    int fd = open(l->spool, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    int rc = fd < 0 ? CMX_EIO : 0;
    size_t off = 0;
    while (rc == 0 && off < b.len) {
        ssize_t w = write(fd, b.data + off, b.len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            rc = CMX_EIO;
        else
            off += (size_t)w;
    }
    if (rc == 0 && fsync(fd) != 0)
        rc = CMX_EIO;
    if (fd >= 0)
        close(fd);
    cmx_buf_free(&b);
    if (rc != 0)
        cmx_log(CMX_LOG_ERROR, "ledger: cannot append %zu record(s) to the spool %s: %s", n,
                l->spool, strerror(errno));
    else
        atomic_fetch_add(&l->spooled, n);
    return rc;
}

static void store_down(struct cmx_ledger *l)
{
    if (l->store != NULL) {
        l->store->ops->close(l->store);
        l->store = NULL;
        cmx_log(CMX_LOG_WARN, "ledger: the store is unreachable; spooling to %s", l->spool);
    }
    l->next_try_ms = mono_ms() + RETRY_MS;
}

/* Writes recs to the store in transactions of at most `batch`; what cannot be written goes
 * to the spool. */
static void write_recs(struct cmx_ledger *l, struct cmx_ledger_rec *const *recs, size_t n)
{
    size_t batch = l->durability == CMX_LEDGER_PER_REQUEST ? 1 : BATCH_MAX;
    size_t i = 0;
    while (i < n && l->store != NULL) {
        size_t k = n - i < batch ? n - i : batch;
        if (l->store->ops->write(l->store, recs + i, k, l->durability == CMX_LEDGER_PER_REQUEST) !=
            0) {
            store_down(l);
            break;
        }
        atomic_fetch_add(&l->committed, k);
        i += k;
    }
    if (i < n)
        spool_append(l, recs + i, n - i);
}

/* Replays the spool into the store; truncates it when every record is in. Idempotent: a
 * record already stored is skipped by its request id. Returns 0 or CMX_EIO. */
static int replay(struct cmx_ledger *l)
{
    FILE *f = fopen(l->spool, "r");
    if (f == NULL)
        return 0;
    struct cmx_ledger_rec **recs = NULL;
    size_t n = 0, cap = 0, bad = 0, total = 0;
    int rc = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    for (;;) {
        len = getline(&line, &lcap, f);
        if (len > 0) {
            struct cmx_ledger_rec *r = NULL;
            if (line[len - 1] == '\n') {
                line[len - 1] = '\0';
                r = cmx_ledger_spool_parse(line);
            }
            if (r == NULL)
                bad++; /* a line cut by a crash mid-append: never acknowledged */
            if (r != NULL && n == cap) {
                cap = cap ? cap * 2 : 1024;
                struct cmx_ledger_rec **nr = realloc(recs, cap * sizeof(*recs));
                if (nr == NULL) {
                    free(r);
                    rc = CMX_ENOMEM;
                    break;
                }
                recs = nr;
            }
            if (r != NULL)
                recs[n++] = r;
        }
        if (len < 0 || n == BATCH_MAX) {
            if (n > 0 && (l->store == NULL || l->store->ops->write(l->store, recs, n, true) != 0))
                rc = CMX_EIO;
            total += n;
            for (size_t i = 0; i < n; i++)
                free(recs[i]);
            n = 0;
            if (rc != 0 || len < 0)
                break;
        }
    }
    for (size_t i = 0; i < n; i++)
        free(recs[i]);
    free(recs);
    free(line);
    fclose(f);
    if (rc == 0) {
        if (truncate(l->spool, 0) != 0)
            rc = CMX_EIO;
        else if (total > 0 || bad > 0)
            cmx_log(CMX_LOG_INFO, "ledger: replayed %zu spooled record(s)%s", total,
                    bad ? " (an incomplete last line was skipped)" : "");
    }
    return rc;
}

static void try_reconnect(struct cmx_ledger *l)
{
    char err[256];
    if (l->store != NULL || mono_ms() < l->next_try_ms)
        return;
    if (cmx_ledger_store_open(l->url, &l->store, err, sizeof(err)) != 0) {
        l->store = NULL;
        l->next_try_ms = mono_ms() + RETRY_MS;
        return;
    }
    if (replay(l) != 0)
        store_down(l);
    else
        cmx_log(CMX_LOG_INFO, "ledger: the store is reachable");
}

static void *writer_main(void *arg)
{
    struct cmx_ledger *l = arg;
    struct cmx_ledger_rec **vec = NULL;
    size_t vcap = 0;
    for (;;) {
        pthread_mutex_lock(&l->mu);
        while (l->head == NULL && !l->stop) {
            if (l->store == NULL) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += 200 * 1000000L;
                if (ts.tv_nsec >= 1000000000L) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&l->wake, &l->mu, &ts);
                break;
            }
            pthread_cond_wait(&l->wake, &l->mu);
        }
        /* batched: let a small batch grow a little; a commit costs about the same for one
         * record as for a thousand (the same pages are written) */
        if (l->durability == CMX_LEDGER_BATCHED && l->store != NULL) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += GATHER_MS * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            /* not woken by each submit (that is `wake`): only when enough is queued */
            while (!l->stop && !l->flushing && l->queued < GATHER_MIN &&
                   pthread_cond_timedwait(&l->full, &l->mu, &ts) == 0)
                ;
        }
        struct cmx_ledger_rec *list = l->head;
        l->head = l->tail = NULL;
        l->queued = 0;
        bool stop = l->stop;
        pthread_mutex_unlock(&l->mu);

        try_reconnect(l);
        size_t n = 0;
        for (struct cmx_ledger_rec *r = list; r != NULL; r = r->next) {
            if (n == vcap) {
                size_t nc = vcap ? vcap * 2 : 1024;
                struct cmx_ledger_rec **nv = realloc(vec, nc * sizeof(*vec));
                if (nv == NULL)
                    break; /* keep what fits; the rest is written next round */
                vec = nv;
                vcap = nc;
            }
            vec[n++] = r;
        }
        struct cmx_ledger_rec *rest = n > 0 ? vec[n - 1]->next : list;
        if (n > 0) {
            vec[n - 1]->next = NULL;
            write_recs(l, vec, n);
            for (size_t i = 0; i < n; i++)
                free(vec[i]);
        }
        pthread_mutex_lock(&l->mu);
        if (rest != NULL) { /* put back in front */
            struct cmx_ledger_rec *t = rest;
            while (t->next != NULL)
                t = t->next;
            t->next = l->head;
            if (l->head == NULL)
                l->tail = t;
            l->head = rest;
            for (struct cmx_ledger_rec *q = rest; q != NULL; q = q->next)
                l->queued++;
        }
        l->processed += n;
        pthread_cond_broadcast(&l->done);
        bool exit_now = stop && l->head == NULL;
        pthread_mutex_unlock(&l->mu);
        if (exit_now)
            break;
    }
    free(vec);
    return NULL;
}

int cmx_ledger_start(const char *url, enum cmx_ledger_durability d, const char *spool,
                     struct cmx_ledger **out, char *err, size_t err_cap)
{
    *out = NULL;
    if (cmx_ledger_store_for(url) == NULL) {
        snprintf(err, err_cap, "ledger: unsupported url (sqlite://PATH or postgres://...)");
        return CMX_EINVAL;
    }
    struct cmx_ledger *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return CMX_ENOMEM;
    l->url = strdup(url);
    l->spool = strdup(spool);
    l->durability = d;
    if (l->url == NULL || l->spool == NULL) {
        free(l->url);
        free(l->spool);
        free(l);
        return CMX_ENOMEM;
    }
    int fd = open(spool, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, err_cap, "ledger: cannot open the spool file %s: %s", spool, strerror(errno));
        free(l->url);
        free(l->spool);
        free(l);
        return CMX_EIO;
    }
    close(fd);
    char oerr[256];
    if (cmx_ledger_store_open(url, &l->store, oerr, sizeof(oerr)) != 0) {
        l->store = NULL;
        cmx_log(CMX_LOG_WARN, "ledger: %s; spooling to %s until it is reachable", oerr, spool);
    } else if (replay(l) != 0) {
        store_down(l);
    }
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->wake, NULL);
    pthread_cond_init(&l->full, NULL);
    pthread_cond_init(&l->done, NULL);
    if (pthread_create(&l->thread, NULL, writer_main, l) != 0) {
        if (l->store != NULL)
            l->store->ops->close(l->store);
        free(l->url);
        free(l->spool);
        free(l);
        return CMX_ENOMEM;
    }
    *out = l;
    return 0;
}

void cmx_ledger_submit(struct cmx_ledger *l, struct cmx_ledger_rec *rec)
{
    rec->next = NULL;
    pthread_mutex_lock(&l->mu);
    bool was_empty = l->head == NULL;
    if (l->tail != NULL)
        l->tail->next = rec;
    else
        l->head = rec;
    l->tail = rec;
    l->submitted++;
    bool full = ++l->queued == GATHER_MIN;
    pthread_mutex_unlock(&l->mu);
    if (was_empty)
        pthread_cond_signal(&l->wake);
    if (full)
        pthread_cond_signal(&l->full);
}

void cmx_ledger_flush(struct cmx_ledger *l)
{
    pthread_mutex_lock(&l->mu);
    uint64_t want = l->submitted;
    l->flushing++;
    pthread_cond_signal(&l->wake);
    pthread_cond_signal(&l->full);
    while (l->processed < want)
        pthread_cond_wait(&l->done, &l->mu);
    l->flushing--;
    pthread_mutex_unlock(&l->mu);
}

void cmx_ledger_stop(struct cmx_ledger *l)
{
    if (l == NULL)
        return;
    pthread_mutex_lock(&l->mu);
    l->stop = true;
    pthread_cond_signal(&l->wake);
    pthread_cond_signal(&l->full);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    if (l->store != NULL)
        l->store->ops->close(l->store);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->wake);
    pthread_cond_destroy(&l->full);
    pthread_cond_destroy(&l->done);
    /* an empty spool is not left behind */
    struct stat st;
    if (stat(l->spool, &st) == 0 && st.st_size == 0)
        unlink(l->spool);
    free(l->url);
    free(l->spool);
    free(l);
}

uint64_t cmx_ledger_committed(const struct cmx_ledger *l)
{
    return atomic_load(&((struct cmx_ledger *)l)->committed);
}

uint64_t cmx_ledger_spooled(const struct cmx_ledger *l)
{
    return atomic_load(&((struct cmx_ledger *)l)->spooled);
}

/* ---- the global hand-off ------------------------------------------------------------------ */

static _Atomic(struct cmx_ledger *) global;

void cmx_ledger_set_global(struct cmx_ledger *l)
{
    atomic_store(&global, l);
}

void cmx_ledger_record(const struct cmx_ledger_input *in)
{
    struct cmx_ledger *l = atomic_load(&global);
    if (l == NULL)
        return;
    struct cmx_ledger_rec *r = cmx_ledger_prepare(in);
    if (r == NULL) {
        cmx_log(CMX_LOG_ERROR, "ledger: out of memory; request %s not recorded", in->request_id);
        return;
    }
    cmx_ledger_submit(l, r);
}

void cmx_ledger_flush_global(void)
{
    struct cmx_ledger *l = atomic_load(&global);
    if (l != NULL)
        cmx_ledger_flush(l);
}

/* ---- URLs --------------------------------------------------------------------------------- */

/* Directory of the config file (with a trailing '/'), "" when it has none. */
static void config_dir(const struct cmx_config *cfg, char *buf, size_t cap)
{
    buf[0] = '\0';
    const char *p = cfg != NULL ? cfg->path : NULL;
    const char *slash = p ? strrchr(p, '/') : NULL;
    if (slash != NULL && p[0] != '<')
        snprintf(buf, cap, "%.*s/", (int)(slash - p), p);
}

const char *cmx_ledger_url(const struct cmx_config *cfg, char *buf, size_t cap)
{
    const char *u = cfg != NULL ? cfg->ledger_url : NULL;
    char dir[4096];
    config_dir(cfg, dir, sizeof(dir));
    if (u != NULL && strcmp(u, "off") == 0)
        return NULL;
    if (u == NULL)
        snprintf(buf, cap, "sqlite://%scloudmux.db", dir);
    else if (strncmp(u, "sqlite://", 9) == 0 && u[9] != '/')
        snprintf(buf, cap, "sqlite://%s%s", dir, u + 9);
    else
        snprintf(buf, cap, "%s", u);
    return buf;
}

const char *cmx_ledger_spool_path(const struct cmx_config *cfg, const char *url, char *buf,
                                  size_t cap)
{
    char dir[4096];
    config_dir(cfg, dir, sizeof(dir));
    const char *s = cfg != NULL ? cfg->ledger_spool : NULL;
    if (s != NULL && s[0] == '/')
        snprintf(buf, cap, "%s", s);
    else if (s != NULL)
        snprintf(buf, cap, "%s%s", dir, s);
    else if (strncmp(url, "sqlite://", 9) == 0)
        snprintf(buf, cap, "%s.spool", url + 9);
    else
        snprintf(buf, cap, "%scloudmux-ledger.spool", dir);
    return buf;
}

bool cmx_ledger_period_ok(const char *p)
{
    if (p == NULL)
        return false;
    size_t n = strlen(p);
    if (n != 7 && n != 10)
        return false;
    for (size_t i = 0; i < n; i++) {
        bool dash = i == 4 || i == 7;
        if (dash ? p[i] != '-' : (p[i] < '0' || p[i] > '9'))
            return false;
    }
    int m = (p[5] - '0') * 10 + (p[6] - '0');
    if (m < 1 || m > 12)
        return false;
    if (n == 10) {
        int64_t ms;
        return cmx_clock_parse_date(p, n, &ms) == 0;
    }
    return true;
}
