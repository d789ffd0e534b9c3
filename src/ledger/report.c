/* Ledger reports: statements and usage, as a table, CSV or JSON. Amounts are exact decimal
 * strings ("12.345678"), never floats; totals are sums of the rows. */
#include "ledger/ledger.h"
#include "ledger/store.h"
#include "core/decimal.h"
#include "core/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *money(int64_t v, char *buf)
{
    cmx_decimal_format(v, 6, buf, 32);
    return buf;
}

static const char *rate(int64_t ppm, char *buf)
{
    /* "0.200000" -> "0.2": a rate reads as written */
    cmx_decimal_format(ppm, 6, buf, 32);
    char *dot = strchr(buf, '.');
    if (dot != NULL) {
        char *e = buf + strlen(buf) - 1;
        while (e > dot && *e == '0')
            *e-- = '\0';
        if (e == dot)
            *e = '\0';
    }
    return buf;
}

static void json_str(struct cmx_buf *b, const char *k, const char *v, bool comma)
{
    cmx_buf_printf(b, "%s\"%s\":\"", comma ? "," : "", k);
    cmx_buf_json_escape(b, v, strlen(v));
    cmx_buf_puts(b, "\"");
}

static void csv_str(struct cmx_buf *b, const char *v)
{
    if (strpbrk(v, ",\"\n\r") == NULL) {
        cmx_buf_puts(b, v);
        return;
    }
    cmx_buf_puts(b, "\"");
    for (; *v; v++) {
        cmx_buf_append(b, v, 1);
        if (*v == '"')
            cmx_buf_puts(b, "\"");
    }
    cmx_buf_puts(b, "\"");
}

/* Opens the ledger for a report. A store that was never created is an error, not a new
 * empty ledger (a report never creates one: a wrong path must not read as "no usage"). */
static int open_store(const char *url, struct cmx_ledger_store **s, char *err, size_t cap)
{
    *s = NULL;
    const struct cmx_ledger_store_ops *ops = cmx_ledger_store_for(url);
    if (ops != NULL && ops->exists != NULL && !ops->exists(url, err, cap))
        return CMX_EIO;
    int r = cmx_ledger_store_open(url, s, err, cap);
    return r == CMX_EINVAL ? CMX_EINVAL : r != 0 ? CMX_EIO : 0;
}

int cmx_ledger_statement(const char *url, const char *payee, const char *period,
                         enum cmx_ledger_format f, struct cmx_buf *out, char *err, size_t cap)
{
    if (payee == NULL || payee[0] == '\0') {
        snprintf(err, cap, "a payee is required");
        return CMX_EINVAL;
    }
    if (period != NULL && !cmx_ledger_period_ok(period)) {
        snprintf(err, cap, "period must be YYYY-MM or YYYY-MM-DD");
        return CMX_EINVAL;
    }
    struct cmx_ledger_store *s;
    int r = open_store(url, &s, err, cap);
    if (r != 0)
        return r;
    struct cmx_ledger_rows rows;
    r = s->ops->statement(s, payee, period, &rows, err, cap);
    s->ops->close(s);
    if (r != 0)
        return r;
    const struct cmx_ledger_stmt_row *w = rows.rows;
    int64_t t_base = 0, t_amount = 0, t_acc = 0, t_over = 0, t_req = 0;
    for (size_t i = 0; i < rows.n; i++) {
        t_base += w[i].base_micros;
        t_amount += w[i].amount_micros;
        t_acc += w[i].accrued_micros;
        t_over += w[i].over_cap_micros;
        t_req += w[i].requests;
    }
    char a[32], b2[32], c[32], d[32], e[32], g[32];
    if (f == CMX_LEDGER_FORMAT_JSON) {
        cmx_buf_puts(out, "{");
        json_str(out, "payee", payee, false);
        cmx_buf_puts(out, ",\"period\":");
        if (period != NULL) {
            cmx_buf_puts(out, "\"");
            cmx_buf_json_escape(out, period, strlen(period));
            cmx_buf_puts(out, "\"");
        } else {
            cmx_buf_puts(out, "null");
        }
        cmx_buf_puts(out, ",\"lines\":[");
        for (size_t i = 0; i < rows.n; i++) {
            cmx_buf_puts(out, i ? ",{" : "{");
            json_str(out, "agreement", w[i].agreement, false);
            cmx_buf_printf(out, ",\"term\":%d", w[i].term);
            json_str(out, "currency", w[i].currency, true);
            json_str(out, "rate", rate(w[i].rate_ppm, a), true);
            json_str(out, "revenue_base", money(w[i].base_micros, b2), true);
            json_str(out, "share", money(w[i].amount_micros, c), true);
            json_str(out, "accrued", money(w[i].accrued_micros, d), true);
            json_str(out, "over_cap", money(w[i].over_cap_micros, e), true);
            if (w[i].has_cap) {
                json_str(out, "cap", money(w[i].cap_micros, g), true);
                json_str(out, "cap_remaining", money(w[i].cap_remaining_micros, g), true);
            } else {
                cmx_buf_puts(out, ",\"cap\":null,\"cap_remaining\":null");
            }
            cmx_buf_printf(out, ",\"requests\":%lld}", (long long)w[i].requests);
        }
        cmx_buf_puts(out, "],\"totals\":{");
        json_str(out, "revenue_base", money(t_base, b2), false);
        json_str(out, "share", money(t_amount, c), true);
        json_str(out, "accrued", money(t_acc, d), true);
        json_str(out, "over_cap", money(t_over, e), true);
        cmx_buf_printf(out, ",\"requests\":%lld}}\n", (long long)t_req);
    } else if (f == CMX_LEDGER_FORMAT_CSV) {
        cmx_buf_puts(out, "agreement,term,currency,rate,revenue_base,share,accrued,over_cap,cap,"
                          "cap_remaining,requests\r\n");
        for (size_t i = 0; i < rows.n; i++) {
            csv_str(out, w[i].agreement);
            cmx_buf_printf(out, ",%d,", w[i].term);
            csv_str(out, w[i].currency);
            cmx_buf_printf(out, ",%s,%s,%s,%s,%s,", rate(w[i].rate_ppm, a),
                           money(w[i].base_micros, b2), money(w[i].amount_micros, c),
                           money(w[i].accrued_micros, d), money(w[i].over_cap_micros, e));
            if (w[i].has_cap)
                cmx_buf_printf(out, "%s,%s", money(w[i].cap_micros, g),
                               money(w[i].cap_remaining_micros, a));
            else
                cmx_buf_puts(out, ",");
            cmx_buf_printf(out, ",%lld\r\n", (long long)w[i].requests);
        }
        cmx_buf_printf(out, "TOTAL,,,,%s,%s,%s,%s,,,%lld\r\n", money(t_base, b2),
                       money(t_amount, c), money(t_acc, d), money(t_over, e), (long long)t_req);
    } else {
        cmx_buf_printf(out, "statement for %s, period %s\n", payee, period ? period : "all");
        cmx_buf_printf(out, "%-32s %4s %-4s %8s %18s %16s %16s %16s %16s %16s %9s\n", "AGREEMENT",
                       "TERM", "CUR", "RATE", "REVENUE BASE", "SHARE", "ACCRUED", "OVER CAP", "CAP",
                       "CAP REMAINING", "REQUESTS");
        for (size_t i = 0; i < rows.n; i++) {
            char h[32];
            cmx_buf_printf(
                out, "%-32s %4d %-4s %8s %18s %16s %16s %16s %16s %16s %9lld\n", w[i].agreement,
                w[i].term, w[i].currency, rate(w[i].rate_ppm, a), money(w[i].base_micros, b2),
                money(w[i].amount_micros, c), money(w[i].accrued_micros, d),
                money(w[i].over_cap_micros, e), w[i].has_cap ? money(w[i].cap_micros, g) : "-",
                w[i].has_cap ? money(w[i].cap_remaining_micros, h) : "-", (long long)w[i].requests);
        }
        cmx_buf_printf(out, "%-32s %4s %-4s %8s %18s %16s %16s %16s %16s %16s %9lld\n", "TOTAL", "",
                       "", "", money(t_base, b2), money(t_amount, c), money(t_acc, d),
                       money(t_over, e), "", "", (long long)t_req);
    }
    free(rows.rows);
    return 0;
}

int cmx_ledger_usage(const char *url, const char *period, const char *by, enum cmx_ledger_format f,
                     struct cmx_buf *out, char *err, size_t cap)
{
    if (period != NULL && !cmx_ledger_period_ok(period)) {
        snprintf(err, cap, "period must be YYYY-MM or YYYY-MM-DD");
        return CMX_EINVAL;
    }
    if (by != NULL && strcmp(by, "model") != 0 && strcmp(by, "cloud") != 0 &&
        strcmp(by, "provider") != 0 && strcmp(by, "day") != 0 && strcmp(by, "tenant") != 0 &&
        strcmp(by, "key") != 0) {
        snprintf(err, cap, "by must be model, cloud, provider, day, tenant or key");
        return CMX_EINVAL;
    }
    struct cmx_ledger_store *s;
    int r = open_store(url, &s, err, cap);
    if (r != 0)
        return r;
    struct cmx_ledger_rows rows;
    /* by key: the key_id column (open-mode rows group under "") */
    r = s->ops->usage(s, period, by != NULL && strcmp(by, "key") == 0 ? "key_id" : by, &rows, err,
                      cap);
    s->ops->close(s);
    if (r != 0)
        return r;
    const struct cmx_ledger_usage_row *w = rows.rows;
    char a[32], b2[32];
    const char *key = by ? by : "total";
    if (f == CMX_LEDGER_FORMAT_JSON) {
        cmx_buf_puts(out, "{\"period\":");
        if (period != NULL)
            cmx_buf_printf(out, "\"%s\"", period);
        else
            cmx_buf_puts(out, "null");
        cmx_buf_puts(out, ",\"by\":");
        if (by != NULL)
            cmx_buf_printf(out, "\"%s\"", by);
        else
            cmx_buf_puts(out, "null");
        cmx_buf_puts(out, ",\"rows\":[");
        for (size_t i = 0; i < rows.n; i++) {
            cmx_buf_puts(out, i ? ",{" : "{");
            json_str(out, "key", w[i].key, false);
            cmx_buf_printf(out,
                           ",\"requests\":%lld,\"prompt_tokens\":%lld,\"completion_tokens\":%lld,"
                           "\"cached_tokens\":%lld,\"reasoning_tokens\":%lld,\"estimated\":%lld",
                           (long long)w[i].requests, (long long)w[i].prompt_tokens,
                           (long long)w[i].completion_tokens, (long long)w[i].cached_tokens,
                           (long long)w[i].reasoning_tokens, (long long)w[i].estimated);
            json_str(out, "revenue", money(w[i].revenue_micros, a), true);
            json_str(out, "cost", money(w[i].cost_micros, b2), true);
            cmx_buf_puts(out, "}");
        }
        cmx_buf_puts(out, "]}\n");
    } else if (f == CMX_LEDGER_FORMAT_CSV) {
        cmx_buf_printf(out,
                       "%s,requests,prompt_tokens,completion_tokens,cached_tokens,"
                       "reasoning_tokens,estimated,revenue,cost\r\n",
                       key);
        for (size_t i = 0; i < rows.n; i++) {
            csv_str(out, w[i].key);
            cmx_buf_printf(out, ",%lld,%lld,%lld,%lld,%lld,%lld,%s,%s\r\n",
                           (long long)w[i].requests, (long long)w[i].prompt_tokens,
                           (long long)w[i].completion_tokens, (long long)w[i].cached_tokens,
                           (long long)w[i].reasoning_tokens, (long long)w[i].estimated,
                           money(w[i].revenue_micros, a), money(w[i].cost_micros, b2));
        }
    } else {
        cmx_buf_printf(out, "%-24s %9s %12s %12s %12s %12s %9s %16s %16s\n", key, "REQUESTS",
                       "PROMPT", "COMPLETION", "CACHED", "REASONING", "ESTIMATED", "REVENUE",
                       "COST");
        for (size_t i = 0; i < rows.n; i++)
            cmx_buf_printf(out, "%-24s %9lld %12lld %12lld %12lld %12lld %9lld %16s %16s\n",
                           by ? w[i].key : "total", (long long)w[i].requests,
                           (long long)w[i].prompt_tokens, (long long)w[i].completion_tokens,
                           (long long)w[i].cached_tokens, (long long)w[i].reasoning_tokens,
                           (long long)w[i].estimated, money(w[i].revenue_micros, a),
                           money(w[i].cost_micros, b2));
    }
    free(rows.rows);
    return 0;
}
