/* Providers of type bedrock: region, endpoint and credentials (see config_bedrock.h). */
#include "config/config_bedrock.h"
#include "core/arena.h"
#include "core/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *nonempty(char *s)
{
    return s != NULL && s[0] != '\0' ? s : NULL;
}

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

int cmx_aws_profile_read(const char *path, const char *profile, struct cmx_arena *a, char **akid,
                         char **secret, char **token)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return CMX_EIO;
    char line[4096];
    bool in = false, found = false;
    int rc = 0;
    *akid = *secret = *token = NULL;
    while (fgets(line, sizeof(line), f) != NULL) {
        char *s = trim(line);
        if (*s == '#' || *s == ';' || *s == '\0')
            continue;
        if (*s == '[') {
            char *e = strchr(s, ']');
            if (e == NULL)
                continue;
            *e = '\0';
            char *name = trim(s + 1);
            if (strncmp(name, "profile ", 8) == 0) /* ~/.aws/config spelling */
                name = trim(name + 8);
            in = strcmp(name, profile) == 0;
            found |= in;
            continue;
        }
        char *eq = strchr(s, '=');
        if (!in || eq == NULL)
            continue;
        *eq = '\0';
        char *k = trim(s), *v = trim(eq + 1);
        char **dst = strcmp(k, "aws_access_key_id") == 0       ? akid
                     : strcmp(k, "aws_secret_access_key") == 0 ? secret
                     : strcmp(k, "aws_session_token") == 0     ? token
                                                               : NULL;
        if (dst != NULL && *v != '\0' && (*dst = cmx_arena_strndup(a, v, strlen(v))) == NULL)
            rc = CMX_ENOMEM;
    }
    memset(line, 0, sizeof(line));
    fclose(f);
    if (rc == 0 && (!found || *akid == NULL || *secret == NULL))
        rc = CMX_ENOTFOUND;
    return rc;
}

static char *sdup(struct cmx_config_ctx *ctx, const char *s)
{
    char *d = cmx_arena_strndup(ctx->arena, s, strlen(s));
    if (d == NULL)
        ctx->nomem = true;
    return d;
}

static void from_profile(struct cmx_config_ctx *ctx, struct cmx_provider_cfg *p, const char *label,
                         int line, const char *profile)
{
    char path[1024];
    const char *file = env("AWS_SHARED_CREDENTIALS_FILE");
    if (file == NULL) {
        const char *home = env("HOME");
        snprintf(path, sizeof(path), "%s/.aws/credentials", home ? home : ".");
        file = path;
    }
    int r = cmx_aws_profile_read(file, profile, ctx->arena, &p->access_key_id,
                                 &p->secret_access_key, &p->session_token);
    if (r == CMX_ENOMEM)
        ctx->nomem = true;
    else if (r != 0)
        cmx_config_error(ctx, line, "%s: AWS profile \"%s\" %s %s", label, profile,
                         r == CMX_EIO ? "cannot be read: no file" : "has no keys in", file);
}

void cmx_config_bedrock_provider(struct cmx_config_ctx *ctx, struct cmx_provider_cfg *p,
                                 const char *label, int line, bool has_base_url, bool has_endpoint)
{
    if (has_base_url && has_endpoint)
        cmx_config_error(ctx, line, "%s: give endpoint or base_url, not both", label);
    p->region = nonempty(p->region);
    if (p->region == NULL) {
        const char *r = env("AWS_REGION");
        if (r == NULL)
            r = env("AWS_DEFAULT_REGION");
        if (r != NULL)
            p->region = sdup(ctx, r);
    }
    if (p->region == NULL) {
        cmx_config_error(ctx, line,
                         "missing required key \"region\" in %s (required for type bedrock; "
                         "or set AWS_REGION)",
                         label);
        return;
    }
    for (const char *c = p->region; *c; c++) {
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-')) {
            cmx_config_error(ctx, line, "%s.region must be an AWS region name such as us-east-1",
                             label);
            return;
        }
    }
    if (p->base_url == NULL) {
        p->base_url =
            cmx_arena_printf(ctx->arena, "https://bedrock-runtime.%s.amazonaws.com", p->region);
        if (p->base_url == NULL)
            ctx->nomem = true;
    }
    p->api_key = nonempty(p->api_key);
    p->access_key_id = nonempty(p->access_key_id);
    p->secret_access_key = nonempty(p->secret_access_key);
    p->session_token = nonempty(p->session_token);
    p->profile = nonempty(p->profile);
    bool explicit_keys = p->access_key_id != NULL || p->secret_access_key != NULL;
    if (p->api_key != NULL) {
        if (explicit_keys || p->profile != NULL)
            cmx_config_error(ctx, line,
                             "%s: give api_key (a Bedrock API key) or AWS credentials, not both",
                             label);
        return;
    }
    if (explicit_keys) {
        if (p->access_key_id == NULL || p->secret_access_key == NULL)
            cmx_config_error(ctx, line,
                             "%s: access_key_id and secret_access_key go together (one is "
                             "missing or empty)",
                             label);
        if (p->profile != NULL)
            cmx_config_error(ctx, line, "%s: give access keys or profile, not both", label);
        return;
    }
    if (p->session_token != NULL) {
        cmx_config_error(ctx, line, "%s: session_token needs access_key_id and secret_access_key",
                         label);
        return;
    }
    if (p->profile != NULL) {
        from_profile(ctx, p, label, line, p->profile);
        return;
    }
    const char *ak = env("AWS_ACCESS_KEY_ID"), *sk = env("AWS_SECRET_ACCESS_KEY");
    if (ak != NULL && sk != NULL) {
        p->access_key_id = sdup(ctx, ak);
        p->secret_access_key = sdup(ctx, sk);
        const char *tok = env("AWS_SESSION_TOKEN");
        if (tok != NULL)
            p->session_token = sdup(ctx, tok);
        return;
    }
    const char *prof = env("AWS_PROFILE");
    if (prof != NULL) {
        from_profile(ctx, p, label, line, prof);
        return;
    }
    const char *bearer = env("AWS_BEARER_TOKEN_BEDROCK");
    if (bearer != NULL) {
        p->api_key = sdup(ctx, bearer);
        return;
    }
    cmx_config_error(ctx, line,
                     "%s has no AWS credentials: set access_key_id and secret_access_key, "
                     "profile, or api_key (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                     "AWS_PROFILE, AWS_BEARER_TOKEN_BEDROCK in the environment)",
                     label);
}
