/* Private to src/config/: the loader's context and its table-driven mapping walker.
 *
 * Every YAML mapping the loader understands is described by a NULL-terminated table of
 * struct cmx_config_key, one row per accepted key: its kind (string, integer, size, bool,
 * decimal price, choice, nested mapping or custom handler) and where the value goes in
 * the object the table describes (offsetof). cmx_config_walk() checks the mapping against
 * the table (unknown keys with a suggestion, duplicates, missing required keys), then
 * stores each value. Adding a top-level section (agreements, tenants, ledger...) means
 * adding one row to the top-level table in config.c that points at a handler or at a
 * sub-table. Messages are collected with their line and sorted into file order at the end,
 * so handlers run in table order (providers before models) whatever the file order. */
#ifndef CMX_CONFIG_CONFIG_INT_H
#define CMX_CONFIG_CONFIG_INT_H

#include <libfyaml.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/arena.h"

#define CMX_CONFIG_MAX_VISITS  200000      /* nodes walked per load: bounds alias expansion */
#define CMX_CONFIG_MAX_FILE    (16u << 20) /* largest config file read */
#define CMX_CONFIG_MAX_DIAG    (1u << 20)  /* cap on the diagnostics text */
#define CMX_CONFIG_MAX_VALUE   (1u << 20)  /* cap on one scalar after ${VAR} expansion */
#define CMX_CONFIG_PATH_MAX    256         /* "providers[3].timeouts.connect_ms" */
#define CMX_CONFIG_MAX_KEYS    64          /* rows per table (the walker keeps a bit mask) */
#define CMX_CONFIG_QUOTE_MAX   60          /* bytes of a value quoted in a message */
#define CMX_CONFIG_YAML_OUTPUT 200         /* bytes kept of libfyaml's printed output */

/* Flags of a table row. */
#define CMX_CONFIG_REQUIRED 1u /* missing key is an error */
#define CMX_CONFIG_SECRET   2u /* never quote the value in a message */

enum cmx_config_kind {
    CMX_CONFIG_STR,     /* char *: expanded text copied into the arena; empty = NULL */
    CMX_CONFIG_INT,     /* int in [min, max] */
    CMX_CONFIG_SIZE,    /* size_t bytes in [min, max], "10MiB"-style suffixes accepted */
    CMX_CONFIG_BOOL,    /* bool: true/false, yes/no, on/off */
    CMX_CONFIG_MICROS,  /* int64_t: decimal text scaled by 10^6 (cmx_decimal_parse), [min, max] */
    CMX_CONFIG_SECS_MS, /* int: decimal seconds ("0.5") stored as milliseconds, [min, max] ms */
    CMX_CONFIG_ENUM,    /* const char *: one of choices (the stored pointer is the static choice) */
    CMX_CONFIG_MAP,     /* nested mapping described by sub, stored into the same object */
    CMX_CONFIG_FN,      /* custom handler fn */
};

struct cmx_config_ctx;

struct cmx_config_key {
    const char *name;                 /* key as written in YAML */
    enum cmx_config_kind kind;        /* how the value is read */
    size_t off;                       /* offset of the field in the described object */
    int64_t min;                      /* INT, SIZE, MICROS: smallest accepted value */
    int64_t max;                      /* INT, SIZE, MICROS: largest accepted value */
    unsigned flags;                   /* CMX_CONFIG_REQUIRED | CMX_CONFIG_SECRET */
    const struct cmx_config_key *sub; /* MAP: rows of the nested mapping */
    const char *const *choices;       /* ENUM: NULL-terminated accepted values */
    int (*fn)(struct cmx_config_ctx *ctx, struct fy_node *val, int line, const char *where,
              void *obj); /* FN: reads val (line of the key) into obj; 0 or -1 */
};

/* One collected message, sorted by (line, seq) before it is written out. */
struct cmx_config_msg {
    int line;     /* 1-based; 0 = no line (I/O errors) */
    size_t seq;   /* emission order, to keep the sort stable */
    bool warning; /* warning rather than error */
    char *text;   /* malloc'd message without prefix */
};

struct cmx_config_ctx {
    const char *name;               /* file name in messages */
    struct cmx_config *cfg;         /* the snapshot being built */
    struct cmx_arena *arena;        /* cfg->arena */
    struct cmx_config_msg *msgs;    /* collected messages (malloc'd array) */
    size_t n_msgs;                  /* used entries of msgs */
    size_t cap_msgs;                /* allocated entries of msgs */
    int errors;                     /* error messages so far */
    bool nomem;                     /* an allocation failed: the load fails with CMX_ENOMEM */
    bool too_big;                   /* visit budget exhausted (reported once) */
    size_t visits;                  /* nodes walked so far */
    char path[CMX_CONFIG_PATH_MAX]; /* where we are, "providers[0].api_key", for messages */
    size_t path_len;                /* strlen(path) */
    char yaml_output[CMX_CONFIG_YAML_OUTPUT]; /* first line libfyaml printed, not collected */
    size_t n_provider_idx;                    /* named entries in cfg->provider_idx so far */
    const char **provider_raw; /* per provider: its name as written, quoted, or NULL */
    const char *input;         /* the YAML text (single-quoted scalars are decoded from it) */
    size_t input_len;          /* its length */
};

/* Records an error / a warning at line (printf format). Never fails: on allocation failure
 * the ctx is marked nomem. */
void cmx_config_error(struct cmx_config_ctx *ctx, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void cmx_config_warn(struct cmx_config_ctx *ctx, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Appends ".seg" (or "seg" at the root) / "[i]" to ctx->path; returns the previous
 * length to pass to cmx_config_path_pop(). Truncates silently when the path is long. */
size_t cmx_config_path_key(struct cmx_config_ctx *ctx, const char *seg);
size_t cmx_config_path_index(struct cmx_config_ctx *ctx, size_t i);
void cmx_config_path_pop(struct cmx_config_ctx *ctx, size_t len);

/* Counts one visited node; false (after one error at line) once the budget is spent. */
bool cmx_config_visit(struct cmx_config_ctx *ctx, int line);

/* Follows an alias to its target. NULL stays NULL; an undefined alias is reported at
 * line and gives NULL with *bad set. */
struct fy_node *cmx_config_resolve(struct cmx_config_ctx *ctx, struct fy_node *n, int line,
                                   bool *bad);

/* The text of scalar node n (NULL for a non-scalar), *len its length. Use this instead of
 * fy_node_get_scalar(), which leaks in libfyaml 0.7.12 for some single-quoted scalars. */
const char *cmx_config_scalar(struct cmx_config_ctx *ctx, struct fy_node *n, size_t *len);

/* True for a YAML null: a missing value, or a plain "", "~", "null", "Null", "NULL". */
bool cmx_config_is_null(struct fy_node *n);

/* 1-based line where node n starts (a mapping: its first key; a sequence: its first
 * item); fallback when unknown (empty collections, synthetic nodes). */
int cmx_config_node_line(struct fy_node *n, int fallback);

/* Reads a value as text after ${VAR} expansion: *text is NUL-terminated and lives in the
 * arena (for a missing value, ""), *len its length. A non-scalar value, a NUL byte or an
 * expansion problem is reported at line (naming ctx->path) and gives -1. Messages about
 * the value should quote its raw text (cmx_config_bad_value), never *text. */
int cmx_config_text(struct cmx_config_ctx *ctx, struct fy_node *n, int line, const char **text,
                    size_t *len);

/* Reports "PATH: MSG, got "RAW"" at line, quoting the raw (unexpanded) text of n unless
 * flags has CMX_CONFIG_SECRET. */
void cmx_config_bad_value(struct cmx_config_ctx *ctx, struct fy_node *n, int line, unsigned flags,
                          const char *msg);

/* Rows of key tables. */
#define K_STR(n, T, f, fl)                                                                         \
    {                                                                                              \
        .name = (n), .kind = CMX_CONFIG_STR, .off = offsetof(T, f), .flags = (fl)                  \
    }
#define K_INT(n, T, f, lo, hi)                                                                     \
    {                                                                                              \
        .name = (n), .kind = CMX_CONFIG_INT, .off = offsetof(T, f), .min = (lo), .max = (hi)       \
    }
#define K_SIZE(n, T, f, lo, hi)                                                                    \
    {                                                                                              \
        .name = (n), .kind = CMX_CONFIG_SIZE, .off = offsetof(T, f), .min = (lo), .max = (hi)      \
    }
#define K_BOOL(n, T, f)                                                                            \
    {                                                                                              \
        .name = (n), .kind = CMX_CONFIG_BOOL, .off = offsetof(T, f)                                \
    }
#define K_MICROS(n, T, f, lo, hi, fl)                                                              \
    {                                                                                              \
        .name = (n), .kind = CMX_CONFIG_MICROS, .off = offsetof(T, f), .min = (lo), .max = (hi),   \
        .flags = (fl)                                                                              \
    }
#define K_SECS_MS(n, T, f, lo, hi)                                                                 \
    {                                                                                              \
        .name = (n), .kind = CMX_CONFIG_SECS_MS, .off = offsetof(T, f), .min = (lo), .max = (hi)   \
    }
#define K_ENUM(n, T, f, list)                                                                      \
    {                                                                                              \
        .name = (n), .kind = CMX_CONFIG_ENUM, .off = offsetof(T, f), .choices = (list)             \
    }
#define K_MAP(n, keys)                                                                             \
    {                                                                                              \
        .name = (n), .kind = CMX_CONFIG_MAP, .sub = (keys)                                         \
    }
#define K_FN(n, handler, fl)                                                                       \
    {                                                                                              \
        .name = (n), .kind = CMX_CONFIG_FN, .fn = (handler), .flags = (fl)                         \
    }
#define K_END                                                                                      \
    {                                                                                              \
        .name = NULL                                                                               \
    }

#define REQ CMX_CONFIG_REQUIRED

/* What cmx_config_walk() found in a mapping, for checks that involve several keys. */
struct cmx_config_seen {
    uint64_t present;               /* bit i: keys[i] was given */
    uint64_t failed;                /* bit i: keys[i] was given but rejected (reported) */
    int lines[CMX_CONFIG_MAX_KEYS]; /* line of keys[i]'s key, 0 when absent */
};

/* Copies s (len bytes) into dst as a message-safe quotation body: at most
 * CMX_CONFIG_QUOTE_MAX bytes, control bytes as '?', '"' and '\\' escaped, "..." when cut.
 * cap must be at least 2 * CMX_CONFIG_QUOTE_MAX + 8. */
void cmx_config_quote(char *dst, size_t cap, const char *s, size_t len);

/* Checks the mapping n against keys and stores every known value into obj. where names
 * the mapping in messages ("provider \"x\"", "\"server\"", NULL at the top level); line is
 * the mapping's line (for missing keys). A null value reads as an empty mapping. seen, when
 * not NULL, receives what was found. Rows are handled in table order. */
void cmx_config_walk(struct cmx_config_ctx *ctx, struct fy_node *n, int line, const char *where,
                     const struct cmx_config_key *keys, void *obj, struct cmx_config_seen *seen);

/* A list value at ctx->path: null reads as empty (*seq NULL, *count 0); anything but a
 * sequence is reported ("... must be a list of <what>") and returns -1. */
int cmx_config_seq(struct cmx_config_ctx *ctx, struct fy_node *val, int line, const char *what,
                   struct fy_node **seq, size_t *count);

/* A list of non-empty strings (a single scalar reads as a list of one; null as empty) into
 * an arena array *out of *n expanded strings. Bad items are reported and skipped. 0, or -1
 * when the value is not a list. */
int cmx_config_strings(struct cmx_config_ctx *ctx, struct fy_node *val, int line, const char *what,
                       const char ***out, size_t *n);

/* Index of the row named name in keys (the tables are static, so a miss is a bug). */
size_t cmx_config_key_index(const struct cmx_config_key *keys, const char *name);

/* The candidate closest to s within edit distance 2 (and at most half the candidate's
 * length, so that short words do not match anything), or NULL. NULL candidates skipped. */
const char *cmx_config_suggest(const char *s, size_t len, const char *const *candidates, size_t n);

/* Parses YAML text into a document. Syntax errors are collected into ctx (with their
 * line) and give NULL; *parser must be passed to cmx_config_yaml_free() in every case. */
struct fy_document *cmx_config_yaml_parse(struct cmx_config_ctx *ctx, const char *yaml, size_t len,
                                          struct fy_parser **parser, struct fy_diag **fydiag);
void cmx_config_yaml_free(struct fy_parser *parser, struct fy_diag *fydiag,
                          struct fy_document *doc);

/* Writes the collected messages, sorted by line, into diag and frees them. */
void cmx_config_flush(struct cmx_config_ctx *ctx, struct cmx_config_diag *diag);

#endif
