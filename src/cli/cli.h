/* Subcommands of the cloudmux binary, one file each in src/cli/. main.c picks one by
 * argv[1] and passes the rest, so that each receives argv[0] == its own name. */
#ifndef CMX_CLI_CLI_H
#define CMX_CLI_CLI_H

/* "cloudmux check --config FILE": loads and validates FILE without starting anything.
 * argv[0] is "check". On errors prints each diagnostic line to stderr and returns 1; on
 * success prints the warnings to stderr and a summary to stdout and returns 0. Usage
 * problems (missing --config, unknown option) print the usage to stderr and return 2;
 * -h/--help prints it to stdout and returns 0. Reads the environment for ${VAR}. */
int cmx_cli_check(int argc, char **argv);

/* "cloudmux serve --config FILE [--listen HOST:PORT] [--workers N]": runs the gateway until
 * SIGTERM/SIGINT (graceful drain, returns 0). SIGHUP reloads the config. Returns 1 when the
 * config is invalid or a listener cannot be started, 2 on usage errors. */
int cmx_cli_serve(int argc, char **argv);

/* "cloudmux reload (--pid PID | --pidfile FILE | --url http://HOST:PORT)": asks a running
 * gateway to re-read its config, by SIGHUP or by POST /admin/v1/reload (with
 * $CLOUDMUX_ADMIN_KEY as bearer token when set). Returns 0 when the request was delivered. */
int cmx_cli_reload(int argc, char **argv);

/* "cloudmux agreements (check|matrix|timeline) --config FILE ...": evaluates the distribution
 * agreements of FILE without starting anything. argv[0] is "agreements". check prints one
 * line and returns 0 when allowed, 3 when denied; matrix and timeline print a report
 * (--format table|csv|json) and return 0. Returns 1 on an invalid config or unknown name,
 * 2 on usage errors. */
int cmx_cli_agreements(int argc, char **argv);
extern const char cmx_cli_agreements_usage[]; /* its usage text */

/* "cloudmux ledger (statement|usage) --config FILE ...": reports from the ledger of FILE's
 * gateway (--format table|csv|json). Returns 0, 1 when the config or the store cannot be
 * read, 2 on usage errors (bad period, format, by). */
int cmx_cli_ledger(int argc, char **argv);
extern const char cmx_cli_ledger_usage[]; /* its usage text */

/* "cloudmux keys (create|list|revoke) --config FILE ...": virtual keys in the ledger database
 * of FILE's gateway. create prints the key once (stdout: the key, then its id and tenant).
 * Returns 0, 1 when the config or the store fails (or revoke of an unknown id), 2 on usage
 * errors (bad option values, unknown tenant). */
int cmx_cli_keys(int argc, char **argv);
extern const char cmx_cli_keys_usage[]; /* its usage text */

/* Reads "--name VALUE" / "--name=VALUE" at argv[*i] into *out (advancing *i past a separate
 * value): 1 when matched, 0 when argv[*i] is another argument, -1 when the value is missing
 * (nothing follows, or the next argument is an option: "--name=--x" passes such a value). */
int cmx_cli_opt(int argc, char **argv, int *i, const char *name, const char **out);

/* Usage text of the whole binary, and of one command (NULL when unknown). */
const char *cmx_cli_usage(const char *command);

#endif
