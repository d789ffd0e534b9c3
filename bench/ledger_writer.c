/* The ledger writer's throughput into SQLite: producer threads (the gateway's workers)
 * submit N usage records, each with two revenue-share accruals (one capped); the writer
 * commits them in batches. Prints records/s from the first submit to the last commit.
 *
 *   build/cmx_bench_ledger [N=500000] [PRODUCERS=2] [batched|per_request] [ACCRUALS=2]
 * ACCRUALS (0-2) is how many revenue-share accruals each record carries (0: a request that
 * no agreement governs, like the gateway bench's plain config).
 */
#include "ledger/ledger.h"
#include "ledger/store.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct producer {
    struct cmx_ledger *l;
    long from, to;
};

static int n_acc = 2; /* accruals per record */

static struct cmx_ledger_rec *mkrec(long i)
{
    /* random-looking ids, as the gateway makes them (x-request-id) */
    unsigned long h = (unsigned long)i * 0x9e3779b97f4a7c15ul;
    char req[48];
    snprintf(req, sizeof(req), "req_%016lx%08lx", h, (unsigned long)i & 0xffffffff);
    struct cmx_ledger_rec t = {.request_id = req,
                               .ts_ms = 1794787200000LL + i / 20, /* 2026-11-15, 20k a second */
                               .model = "gpt-5",
                               .product = "gpt-5",
                               .provider = "azure-eastus",
                               .cloud = "azure",
                               .region = "eastus",
                               .agreements = "microsoft@2026-10-28",
                               .prompt_tokens = 1200 + i % 100,
                               .completion_tokens = 300 + i % 50,
                               .cached_tokens = 400,
                               .reasoning_tokens = 64,
                               .status = 200,
                               .latency_ms = 850,
                               .revenue_micros = 6000 + i % 1000,
                               .cost_micros = 3000};
    cmx_ledger_record_id(t.ts_ms, t.record_id, sizeof(t.record_id));
    struct cmx_ledger_accrual acc[2];
    for (int k = 0; k < 2; k++) {
        struct cmx_ledger_accrual *a = &acc[k];
        a->agreement = k ? "amazon@2026-03-01" : "microsoft@2026-10-28";
        a->payee = k ? "amazon" : "microsoft";
        a->currency = "USD";
        a->term = 0;
        a->rate_ppm = k ? 50000 : 200000;
        a->has_cap = k == 0;
        a->cap_micros = 1000000000000LL;
        a->amount_micros = cmx_ledger_share(t.revenue_micros, a->rate_ppm);
    }
    struct cmx_ledger_rec *r = cmx_ledger_rec_new(&t, acc, (size_t)n_acc);
    if (r == NULL)
        abort();
    return r;
}

static void *produce(void *arg)
{
    struct producer *p = arg;
    for (long i = p->from; i < p->to; i++)
        cmx_ledger_submit(p->l, mkrec(i));
    return NULL;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 500000;
    int np = argc > 2 ? atoi(argv[2]) : 2;
    bool per_request = argc > 3 && strcmp(argv[3], "per_request") == 0;
    n_acc = argc > 4 ? atoi(argv[4]) : 2;
    if (n <= 0 || np <= 0 || np > 64 || n_acc < 0 || n_acc > 2) {
        fprintf(stderr,
                "usage: cmx_bench_ledger [N] [PRODUCERS] [batched|per_request] [ACCRUALS 0-2]\n");
        return 2;
    }
    char dir[] = "/tmp/cmx-bench-ledger-XXXXXX";
    if (mkdtemp(dir) == NULL)
        return 1;
    char url[256], spool[256], err[256];
    snprintf(url, sizeof(url), "sqlite://%s/ledger.db", dir);
    snprintf(spool, sizeof(spool), "%s/ledger.db.spool", dir);
    struct cmx_ledger *l;
    if (cmx_ledger_start(url, per_request ? CMX_LEDGER_PER_REQUEST : CMX_LEDGER_BATCHED, spool, &l,
                         err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    struct producer ps[64];
    pthread_t th[64];
    double t0 = now_s();
    for (int i = 0; i < np; i++) {
        ps[i] = (struct producer){l, n * i / np, n * (i + 1) / np};
        pthread_create(&th[i], NULL, produce, &ps[i]);
    }
    for (int i = 0; i < np; i++)
        pthread_join(th[i], NULL);
    double t_submit = now_s();
    cmx_ledger_flush(l);
    double t1 = now_s();
    uint64_t committed = cmx_ledger_committed(l), spooled = cmx_ledger_spooled(l);
    cmx_ledger_stop(l);
    struct cmx_ledger_store *s;
    int64_t rows = -1;
    if (cmx_ledger_store_open(url, &s, err, sizeof(err)) == 0) {
        rows = s->ops->count(s);
        s->ops->close(s);
    }
    printf("ledger writer (SQLite, %s): %ld records (%d accruals each) from %d producer(s) in "
           "%.3f s = %.0f records/s (submitted in %.3f s); committed %llu, spooled %llu, rows "
           "%lld\n",
           per_request ? "per_request" : "batched", n, n_acc, np, t1 - t0, (double)n / (t1 - t0),
           t_submit - t0, (unsigned long long)committed, (unsigned long long)spooled,
           (long long)rows);
    char cmd[320];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return rows == n ? 0 : 1;
}
