/* libFuzzer target for the `limits:` parser (src/limits/limits_config.c): any text as the
 * scalar form, and the same bytes cut into key/value pairs for the map form. A success
 * must leave a consistent config; a description never shows the password. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "limits/limits.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const struct cmx_limits_config *c)
{
    char desc[600];
    if (c->backend == CMX_LIMITS_REDIS) {
        size_t hl = strnlen(c->host, sizeof(c->host));
        if (hl == 0 || hl > CMX_LIMITS_HOST_MAX || c->port < 1 || c->port > 65535 || c->db < 0 ||
            c->db > 9999)
            abort();
    }
    if (strnlen(c->password, sizeof(c->password)) > CMX_LIMITS_SECRET_MAX ||
        strnlen(c->user, sizeof(c->user)) > CMX_LIMITS_SECRET_MAX)
        abort();
    size_t n = cmx_limits_config_describe(c, desc, sizeof(desc));
    if (n != strlen(desc))
        abort();
    /* the description does not depend on the password (nor the user) at all: the same
     * config with other credentials describes itself identically (comparing texts instead
     * would flag a password that happens to be a word of the description, "fail_open") */
    struct cmx_limits_config other = *c;
    char desc2[600];
    memset(other.password, 0, sizeof(other.password));
    memset(other.user, 0, sizeof(other.user));
    if (c->password[0] != '\0')
        memcpy(other.password, "x", 2);
    size_t n2 = cmx_limits_config_describe(&other, desc2, sizeof(desc2));
    if (n2 != n || memcmp(desc, desc2, n) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cmx_limits_config c;
    char err[160];
    const char *s = (const char *)data;

    cmx_limits_config_init(&c);
    if (cmx_limits_config_parse(&c, s, size, err, sizeof(err)) == 0)
        check(&c);
    else if (strlen(err) == 0 || strlen(err) >= sizeof(err))
        abort();

    /* map form: pairs separated by '\n', key and value by '=' */
    const char *keys[8], *vals[8];
    size_t lens[8], n = 0;
    char *copy = malloc(size + 1);
    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    for (char *line = copy; line != NULL && n < 8;) {
        char *nl = strchr(line, '\n');
        if (nl != NULL)
            *nl = '\0';
        char *eq = strchr(line, '=');
        if (eq != NULL) {
            *eq = '\0';
            keys[n] = line;
            vals[n] = eq + 1;
            lens[n] = strlen(eq + 1);
            n++;
        }
        line = nl != NULL ? nl + 1 : NULL;
    }
    cmx_limits_config_init(&c);
    if (cmx_limits_config_parse_map(&c, keys, vals, lens, n, err, sizeof(err)) == 0)
        check(&c);
    free(copy);
    return 0;
}
