/* Distribution agreements as code: which cloud may serve which product (and capability)
 * when, by first launch, opt-outs, licences and amendments; and which revenue-share terms
 * are in force. Terms depend on dates only.
 *
 * The terms are read with the configuration (src/config/config_agreements.c) into a
 * struct cmx_agreements owned by the config snapshot (cfg->agreements, NULL when the file
 * has no maker/products/agreements). At load, for every (product, cloud, capability), the
 * decision is precomputed as an ordered list of intervals, so that a decision at run time
 * is a binary search with no allocation. Everything here reads an immutable snapshot and
 * is safe from any thread.
 *
 * Rules (docs/agreements.md):
 * - the version of an agreement in force at T is the latest with effective <= T, and it
 *   replaces the whole of the older one (terms are not merged);
 * - a licence runs from its `from` (default: its version's effective date) through the
 *   end (23:59:59.999Z) of its `until` date;
 * - the maker's own cloud needs no licence, is not bound by first launch and is never
 *   shut out by an exclusive licence: it needs only the product launched on it;
 * - any other cloud needs: no exclusive licence in force held by another cloud (under any
 *   agreement); a licence in force covering the product; the product launched on it; and,
 *   for every first-launch rule in force covering the product whose primary cloud is not
 *   this cloud, unless an opt-out in force covers the product and/or the capability: the
 *   product launched on the primary (day D), and D + holdback_days at 00:00Z reached;
 * - when several reasons deny, the first of the order of enum cmx_agr_reason is reported;
 * - a model whose product is not defined under products: is not governed at all. */
#ifndef CMX_AGREEMENTS_AGREEMENTS_H
#define CMX_AGREEMENTS_AGREEMENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/json_scan.h"

struct cmx_arena;
struct cmx_config;
struct cmx_model_cfg;
struct cmx_deployment_cfg;
struct cmx_route_excluded;

/* Capabilities a request uses (bit mask). */
#define CMX_CAP_CHAT       1u  /* POST /v1/chat/completions */
#define CMX_CAP_EMBEDDINGS 2u  /* POST /v1/embeddings */
#define CMX_CAP_TOOLS      4u  /* a non-empty "tools" (or legacy "functions") */
#define CMX_CAP_VISION     8u  /* an image_url content part */
#define CMX_CAP_AUDIO      16u /* an input_audio part, "audio", or "audio" in "modalities" */
#define CMX_CAP_COUNT      5   /* bits above, in this order */
#define CMX_CAP_ALL        31u

/* "Never" / "no such time" in the int64 millisecond times below. */
#define CMX_AGR_NEVER INT64_MAX

/* Why a cloud may not serve; the order is the reporting order when several apply. */
enum cmx_agr_reason {
    CMX_AGR_ALLOWED = 0,             /* may serve */
    CMX_AGR_EXCLUSIVE_TO_OTHER,      /* another cloud holds an exclusive licence in force */
    CMX_AGR_NO_LICENCE,              /* no licence in force covers the product */
    CMX_AGR_LICENCE_EXPIRED,         /* this cloud's licence for it has ended */
    CMX_AGR_NOT_LAUNCHED,            /* the product has not launched on this cloud */
    CMX_AGR_AWAITING_PRIMARY_LAUNCH, /* first launch: not yet launched on the primary cloud */
    CMX_AGR_HOLDBACK,                /* first launch: within the holdback after the primary's */
};
#define CMX_AGR_REASON_COUNT 7

/* Which products a term covers. */
enum cmx_agr_scope_kind {
    CMX_AGR_SCOPE_LIST, /* the products listed */
    CMX_AGR_SCOPE_ALL,  /* "*" */
    CMX_AGR_SCOPE_CORE, /* core (first_launch only): products with core: true */
};

struct cmx_agr_scope {
    enum cmx_agr_scope_kind kind; /* list, all or core */
    size_t *products;             /* LIST: indexes into cmx_agreements.products */
    size_t n_products;            /* LIST: entries of products */
};

struct cmx_agr_product {
    char *name;        /* products[].name, unique */
    bool core;         /* products[].core: bound by first-launch rules over "core" */
    unsigned caps;     /* products[].capabilities (CMX_CAP_* bits); default chat */
    int64_t *launches; /* per cloud index: launch instant (ms), CMX_AGR_NEVER when none */
    int line;          /* line of the entry */
};

/* An opt-out of a first-launch rule: the primary cloud gave up its head start. */
struct cmx_agr_optout {
    int64_t product; /* index into products, -1: any product the rule covers */
    unsigned caps;   /* CMX_CAP_* bits named, 0: every capability */
    int64_t since;   /* in force from (ms); default: the version's effective instant */
    int line;        /* line of the entry */
};

struct cmx_agr_licence {
    size_t cloud;               /* licensee: index into cmx_agreements.clouds */
    struct cmx_agr_scope scope; /* products: "*" or a list */
    int64_t from;               /* first ms in force; default: the version's effective */
    int64_t until;              /* last ms in force (23:59:59.999Z of the until date) */
    bool exclusive;             /* shuts out every other cloud but the maker's */
    int line;                   /* line of the entry */
};

/* base of a revenue share: all revenue, or the revenue of some clouds and/or products. */
struct cmx_agr_revshare {
    char *payee;        /* who is paid */
    int64_t rate_ppm;   /* rate in parts per million, 0..1000000 (exact from the decimal) */
    bool base_all;      /* base: all */
    size_t *clouds;     /* base.clouds: cloud indexes (n_clouds entries); empty = any cloud */
    size_t n_clouds;    /* entries of clouds */
    size_t *products;   /* base.products: product indexes; empty = any product */
    size_t n_products;  /* entries of products */
    int64_t from;       /* first ms in force; default: the version's effective */
    int64_t until;      /* last ms in force (end of the until date) */
    bool has_cap;       /* a cumulative cap is set */
    int64_t cap_micros; /* cap in micro-units of currency (valid when has_cap) */
    char *currency;     /* ISO 4217 code, default "USD" */
    int line;           /* line of the entry */
};

struct cmx_agr_agreement;

struct cmx_agr_version {
    struct cmx_agr_agreement *agreement; /* the agreement this version belongs to */
    int64_t effective;                   /* in force from (ms) */
    int64_t end;                         /* first ms of the next version, CMX_AGR_NEVER */
    char *label;                         /* "id@YYYY-MM-DD" (or @date-time when not 00:00Z) */
    int64_t primary;                     /* primary_cloud index, -1 when none */
    bool has_first_launch;               /* first_launch: given */
    struct cmx_agr_scope first_launch;   /* first_launch.products (default core) */
    int holdback_days;                   /* first_launch.holdback_days (default 0) */
    struct cmx_agr_optout *opt_outs;     /* first_launch.opt_outs */
    size_t n_opt_outs;
    struct cmx_agr_licence *licences; /* licences, config order */
    size_t n_licences;
    struct cmx_agr_revshare *shares; /* revenue_shares, config order */
    size_t n_shares;
    int line; /* line of the entry */
};

struct cmx_agr_agreement {
    char *id;                         /* agreements[].id, unique */
    struct cmx_agr_version *versions; /* sorted by effective, ascending */
    size_t n_versions;                /* >= 1 */
    size_t pos;                       /* index in cmx_agreements.agreements (config order) */
    int line;                         /* line of the entry */
};

struct cmx_agr_series;
struct cmx_agr_aseries;

struct cmx_agreements {
    char *maker;                      /* maker: the maker's own cloud label, NULL when not given */
    int64_t maker_cloud;              /* its index in clouds, -1 when none */
    char **clouds;                    /* every cloud label of the config, sorted (strcmp) */
    size_t n_clouds;                  /* entries of clouds */
    struct cmx_agr_product *products; /* products, config order */
    size_t n_products;
    struct cmx_agr_agreement *agreements; /* agreements, config order */
    size_t n_agreements;
    int64_t *provider_cloud; /* per cfg->providers entry: its cloud index */
    int64_t *model_product;  /* per cfg->models entry: product index, -1 ungoverned */
    /* precomputed (private to src/agreements/): */
    struct cmx_agr_series *series;   /* [(product * n_clouds + cloud) * CMX_CAP_COUNT + cap] */
    struct cmx_agr_aseries *applied; /* [product * n_clouds + cloud] */
    void *load;                      /* loader state while the config is read (then NULL) */
};

/* One decision. */
struct cmx_agr_decision {
    enum cmx_agr_reason reason;       /* CMX_AGR_ALLOWED or the first reason that denies */
    const struct cmx_agr_version *by; /* version that decided: the licence's (allowed or
                                       * exclusive/expired), the first-launch rule's; NULL
                                       * for no_licence, not_launched and the maker's cloud */
    int64_t when;        /* the date the message speaks of (licence end, launch, holdback
                          * end, a licence's future start), CMX_AGR_NEVER when none */
    unsigned cap;        /* the capability bit that decided (the first denying one) */
    int64_t other;       /* exclusive_to_other: the licensee; awaiting_primary_launch and
                          * holdback: the primary cloud; else -1 (a cloud index) */
    bool on_primary;     /* not_launched: this cloud is the primary of a rule in force */
    int64_t next_change; /* first ms after `at` when reason or `by` changes, CMX_AGR_NEVER */
    const char *applied; /* "id@eff, id@eff": agreements whose terms apply at `at`; NULL */
};

/* ---- names ---------------------------------------------------------------------------- */

/* "exclusive_to_other", ..., "allowed". Never NULL. */
const char *cmx_agr_reason_name(enum cmx_agr_reason r);

/* "chat", "embeddings", "tools", "vision", "audio" for one bit; "?" otherwise. */
const char *cmx_cap_name(unsigned cap);

/* The bit of a capability name (len bytes), 0 when unknown. */
unsigned cmx_cap_parse(const char *name, size_t len);

/* Index of a product / cloud by name, -1 when unknown. O(n) / O(log n). */
int64_t cmx_agreements_product(const struct cmx_agreements *a, const char *name);
int64_t cmx_agreements_cloud(const struct cmx_agreements *a, const char *name);

/* The product index governing model m of cfg, -1 when ungoverned (or no agreements). */
int64_t cmx_agreements_model_product(const struct cmx_config *cfg, const struct cmx_model_cfg *m);

/* ---- decisions ------------------------------------------------------------------------ */

/* The decision for product p on cloud c at instant at, for a request using every
 * capability in caps (a non-empty CMX_CAP_* mask; the first denying one decides). Uses the
 * precomputed intervals; no allocation. Returns 0, or CMX_EINVAL for an index out of
 * range or an empty caps. Thread: any. */
int cmx_agreements_decide(const struct cmx_agreements *a, size_t p, size_t c, unsigned caps,
                          int64_t at, struct cmx_agr_decision *out);

/* Same decision's reason only: the hot path of routing (a binary search per capability). */
enum cmx_agr_reason cmx_agreements_reason(const struct cmx_agreements *a, size_t p, size_t c,
                                          unsigned caps, int64_t at);

/* The same decision evaluated directly from the terms, without the precomputed intervals
 * (next_change and applied are not set). For tests and load-time precomputation. */
void cmx_agreements_evaluate(const struct cmx_agreements *a, size_t p, size_t c, unsigned cap,
                             int64_t at, struct cmx_agr_decision *out);

/* The first instant >= at when product p may be served on cloud c for caps, or
 * CMX_AGR_NEVER. */
int64_t cmx_agreements_allowed_from(const struct cmx_agreements *a, size_t p, size_t c,
                                    unsigned caps, int64_t at);

/* A one-line human message for decision d of (p, c) into buf (NUL-terminated, truncated to
 * cap), without the agreement (d->by) so that clouds denied for the same reason read the
 * same. Denials: "gpt-6 has not launched on the primary cloud azure"; allowed: "aws may
 * serve gpt-5". Returns the length. */
size_t cmx_agreements_message(const struct cmx_agreements *a, size_t p, size_t c,
                              const struct cmx_agr_decision *d, char *buf, size_t cap);

/* ---- the request path (the lead wires these into src/api/) ----------------------------- */

/* Capabilities of a request: endpoint 0 (chat completions) or 1 (embeddings), the body
 * (len bytes) and its top-level members as found by cmx_json_scan(). Chat: CHAT, plus
 * TOOLS for a non-empty "tools"/"functions" array, VISION for an image_url content part,
 * AUDIO for an input_audio part, an "audio" member that is not null, or "audio" in
 * "modalities". "messages" is parsed (json-c) only when its text mentions image_url or
 * input_audio. Embeddings: EMBEDDINGS. Never fails (unreadable parts add nothing). */
unsigned cmx_caps_from_request(int endpoint, const char *body, size_t len,
                               const struct cmx_json_member *m, size_t n);

/* Per-request state of the eligibility filter; the caller embeds it (no allocation). */
struct cmx_agreement_check {
    const struct cmx_config *cfg;      /* the snapshot serving the request */
    const struct cmx_model_cfg *model; /* the public model requested (in cfg) */
    unsigned caps;                     /* cmx_caps_from_request() */
    uint64_t now_ms;                   /* cmx_clock_now_ms() taken once per request */
    struct cmx_arena *arena;           /* the request's arena: why strings are put there */
};

/* A cmx_route_filter_fn: ud is a struct cmx_agreement_check. True when deployment d (of
 * chk->model) may serve the request under the agreements (always true for an ungoverned
 * model or a config without agreements). Otherwise *why = the reason code (a static
 * string); cmx_agreements_why() and cmx_agreements_denial() build the messages when a
 * caller needs them. No allocation: a binary search per deployment. Thread: any. */
bool cmx_agreements_filter(void *ud, const struct cmx_deployment_cfg *d, const char **why);

/* Why the agreements deny deployment d for chk's request: "<reason_code>: <message>" in
 * buf (NUL-terminated, truncated to cap), as cmx_agreements_filter() decides. Returns the
 * length written; 0 (buf "") when d is allowed or not governed. */
size_t cmx_agreements_why(const struct cmx_agreement_check *chk, const struct cmx_deployment_cfg *d,
                          char *buf, size_t cap);

/* The 403 message when routing left no deployment: for the deployments in ex[0..n) that
 * the agreements denied (others are skipped), each distinct reason once, then when each
 * cloud may serve, e.g. "gpt-6 has not launched on the primary cloud azure; azure and aws
 * may serve it from 2026-12-15". Appended to out (text, not JSON-escaped). Returns 0,
 * CMX_ENOTFOUND when none of ex was denied by agreements (out untouched), or CMX_ENOMEM /
 * CMX_ETOOBIG from out. */
int cmx_agreements_denial(const struct cmx_agreement_check *chk,
                          const struct cmx_route_excluded *ex, size_t n, struct cmx_buf *out);

/* The x-cloudmux-agreement value for deployment d serving chk's request: "id@effective"
 * of each agreement whose terms applied (a licence it served under, a first-launch rule
 * it was bound by, a revenue share in force over its revenue), comma-separated, config
 * order. NULL when none applied (ungoverned model). The string lives in the config
 * snapshot; no allocation. */
const char *cmx_agreements_applied(const struct cmx_agreement_check *chk,
                                   const struct cmx_deployment_cfg *d);

/* ---- reports (CLI and GET /admin/v1/agreements/...) ------------------------------------ */

/* Output formats of the reports. */
enum cmx_agr_format {
    CMX_AGR_FORMAT_TABLE, /* aligned columns for people */
    CMX_AGR_FORMAT_CSV,   /* RFC 4180, one header line */
    CMX_AGR_FORMAT_JSON,  /* one JSON document (the admin API's) */
};

/* `agreements matrix`: products x clouds at instant at (ms) in format f, appended to out.
 * Table / CSV: one row per product, one column per cloud; a cell is "allowed", the reason
 * code, or "partial(cap=reason,...)" when the product's capabilities differ. JSON: as
 * cmx_agreements_matrix_json(). 0 or the buffer's error. */
int cmx_agreements_matrix(const struct cmx_config *cfg, int64_t at, enum cmx_agr_format f,
                          struct cmx_buf *out);

/* `agreements timeline`: every instant at which the decision of some (product, cloud)
 * changes (per capability of the product), with the state before and after and why, in
 * time order. product: only that product (NULL: all); CMX_ENOTFOUND when unknown. JSON:
 * {"changes":[{"at","product","cloud","from","to","reason","agreement"}]}. */
int cmx_agreements_timeline(const struct cmx_config *cfg, const char *product,
                            enum cmx_agr_format f, struct cmx_buf *out);

/* GET /admin/v1/agreements/matrix?at=: every product x cloud at at_ms, as JSON:
 * {"at":ISO,"maker":..,"clouds":[..],"products":[..],"cells":[{"product","cloud",
 * "decision":"allowed"|"denied"|"partial","reason","message","agreement","next_change",
 * "applied","capabilities":{"chat":{"decision","reason","message","agreement","next_change"},..}}]}
 * (reason/agreement/next_change null when none). With no agreements configured the lists
 * are empty. Appends to out; 0 or the buffer's error. */
int cmx_agreements_matrix_json(const struct cmx_config *cfg, uint64_t at_ms, struct cmx_buf *out);

/* GET /admin/v1/agreements/check?(product=|model=)&cloud=&capability=&at=: one decision as
 * JSON {"product","model","cloud","capabilities":[..],"at","governed","decision","reason",
 * "message","agreement","applied","next_change","may_serve_from"}. product or model (one of
 * them, NUL-terminated), cloud required; capability: a name, a comma-separated list, or
 * NULL for chat (for a product without chat: its first capability). An ungoverned model is allowed
 * ("governed": false). Returns 0; CMX_EINVAL or CMX_ENOTFOUND with a message in err
 * (NUL-terminated, for a 400/404) when a name is unknown or missing; the buffer's error otherwise.
 */
int cmx_agreements_check_json(const struct cmx_config *cfg, const char *product, const char *model,
                              const char *cloud, const char *capability, uint64_t at_ms,
                              struct cmx_buf *out, char *err, size_t err_cap);

/* `agreements check`: the same decision as one line, "allowed: MESSAGE [agreements];
 * next change DATE" or "denied REASON: MESSAGE (id@eff); CLOUD may serve it from DATE",
 * ending in '\n', appended to out; *allowed tells which. Arguments and errors as
 * cmx_agreements_check_json(). */
int cmx_agreements_check_line(const struct cmx_config *cfg, const char *product, const char *model,
                              const char *cloud, const char *capability, uint64_t at_ms,
                              bool *allowed, struct cmx_buf *out, char *err, size_t err_cap);

/* ---- revenue shares (for the ledger) --------------------------------------------------- */

/* A revenue-share term in force. */
struct cmx_agr_share_view {
    const char *agreement;                 /* "id@effective" of its version */
    const struct cmx_agr_version *version; /* the version holding it */
    const struct cmx_agr_revshare *term;   /* the term (payee, rate_ppm, cap, currency...) */
    size_t index;                          /* its position in version->shares (identity) */
};

/* Lists the revenue-share terms in force at at_ms whose base covers revenue earned on
 * cloud (a label) for product (a product name; NULL or undefined: ungoverned, matched only
 * by bases that do not name products), in agreement then config order, into
 * out[0..max). Returns how many match (which may exceed max). No allocation. */
size_t cmx_agreements_revenue_shares(const struct cmx_agreements *a, int64_t at_ms,
                                     const char *cloud, const char *product,
                                     struct cmx_agr_share_view *out, size_t max);

#endif
