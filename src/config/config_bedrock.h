/* Config of providers of type bedrock: region, endpoint and AWS credentials. */
#ifndef CMX_CONFIG_CONFIG_BEDROCK_H
#define CMX_CONFIG_CONFIG_BEDROCK_H

#include <stdbool.h>

#include "config/config_int.h"

/* Completes and checks a bedrock provider after its keys were read: region (or AWS_REGION /
 * AWS_DEFAULT_REGION), base_url (endpoint, or https://bedrock-runtime.REGION.amazonaws.com),
 * and credentials, first found wins: api_key (Bedrock API key, Bearer) | access_key_id +
 * secret_access_key [+ session_token] | profile (AWS_SHARED_CREDENTIALS_FILE or
 * ~/.aws/credentials) | AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY [+ AWS_SESSION_TOKEN] |
 * AWS_PROFILE | AWS_BEARER_TOKEN_BEDROCK. Problems are reported on ctx at line, naming
 * label (never a secret). Strings go to ctx->arena. */
void cmx_config_bedrock_provider(struct cmx_config_ctx *ctx, struct cmx_provider_cfg *p,
                                 const char *label, int line, bool has_base_url, bool has_endpoint);

/* Reads profile's aws_access_key_id / aws_secret_access_key / aws_session_token from the
 * INI file at path into arena strings (*token NULL when absent). 0, CMX_EIO (unreadable),
 * CMX_ENOTFOUND (no such profile or no keys in it) or CMX_ENOMEM. */
int cmx_aws_profile_read(const char *path, const char *profile, struct cmx_arena *a, char **akid,
                         char **secret, char **token);

#endif
