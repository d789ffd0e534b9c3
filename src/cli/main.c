/* cloudmux: the multi-cloud AI model gateway. Dispatches to one subcommand. */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

static const char usage_all[] =
    "cloudmux " CMX_VERSION " - a multi-cloud, OpenAI-compatible AI model gateway\n"
    "\n"
    "usage: cloudmux COMMAND [OPTIONS]\n"
    "\n"
    "commands:\n"
    "  serve --config FILE [--listen HOST:PORT] [--workers N]\n"
    "                      run the gateway (SIGHUP reloads the config, SIGTERM drains)\n"
    "  check --config FILE validate a config; print FILE:LINE errors or a summary\n"
    "  reload (--pid PID | --pidfile FILE | --url URL)\n"
    "                      make a running gateway re-read its config\n"
    "  agreements (check|matrix|timeline) --config FILE ...\n"
    "                      who may serve which product where, and when\n"
    "  ledger (statement|usage) --config FILE ...\n"
    "                      revenue-share statements and metered usage\n"
    "  keys (create|list|revoke) --config FILE ...\n"
    "                      virtual keys of tenants (shown once, stored hashed)\n"
    "  help [COMMAND]      show help for a command\n"
    "  --version           print the version\n";

static const char usage_serve[] =
    "usage: cloudmux serve --config FILE [--listen HOST:PORT] [--workers N]\n"
    "                      [--pidfile FILE]\n"
    "\n"
    "Runs the gateway on the configuration in FILE.\n"
    "  --config FILE       YAML configuration; ${VAR} and ${VAR:-default} are read from the\n"
    "                      environment (a missing variable is an error)\n"
    "  --listen HOST:PORT  overrides `listen:` ([::1]:8080 for IPv6)\n"
    "  --workers N         overrides `workers:`; 0 = one per core\n"
    "  --pidfile FILE      write the process id to FILE (removed at exit)\n"
    "  --now ISO8601       freeze the clock of agreements (and the ledger) at this UTC time,\n"
    "                      for tests and what-if runs; no request can move it\n"
    "Signals: SIGTERM/SIGINT stop accepting, finish requests in flight (bounded by\n"
    "server.drain_timeout_s) and exit 0; SIGHUP re-reads FILE and swaps it in when valid.\n"
    "Environment: CLOUDMUX_LOG=debug for debug logging on stderr.\n";

static const char usage_check[] =
    "usage: cloudmux check --config FILE\n"
    "\n"
    "Loads FILE, reports every problem as FILE:LINE: error: MESSAGE and exits 1 if there\n"
    "is one; otherwise prints a summary and exits 0.\n";

static const char usage_reload[] =
    "usage: cloudmux reload (--pid PID | --pidfile FILE | --url http://HOST:PORT)\n"
    "\n"
    "Asks a running gateway to re-read its configuration file: by SIGHUP to PID (or to the\n"
    "pid written by serve --pidfile), or by POST URL/admin/v1/reload (sending\n"
    "$CLOUDMUX_ADMIN_KEY as a bearer token when set). A valid config is swapped in without\n"
    "dropping a connection; an invalid one is logged by the gateway and the old one kept.\n";

const char *cmx_cli_usage(const char *command)
{
    if (command == NULL)
        return usage_all;
    if (strcmp(command, "serve") == 0)
        return usage_serve;
    if (strcmp(command, "check") == 0)
        return usage_check;
    if (strcmp(command, "reload") == 0)
        return usage_reload;
    if (strcmp(command, "agreements") == 0)
        return cmx_cli_agreements_usage;
    if (strcmp(command, "ledger") == 0)
        return cmx_cli_ledger_usage;
    if (strcmp(command, "keys") == 0)
        return cmx_cli_keys_usage;
    if (strcmp(command, "help") == 0)
        return usage_all;
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_all, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("cloudmux %s\n", CMX_VERSION);
        return 0;
    }
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0) {
        fputs(usage_all, stdout);
        return 0;
    }
    if (strcmp(cmd, "help") == 0) {
        const char *u = cmx_cli_usage(argc > 2 ? argv[2] : NULL);
        if (u == NULL) {
            fprintf(stderr, "cloudmux: no such command '%s'\n%s", argv[2], usage_all);
            return 2;
        }
        fputs(u, stdout);
        return 0;
    }
    if (strcmp(cmd, "serve") == 0)
        return cmx_cli_serve(argc - 1, argv + 1);
    if (strcmp(cmd, "check") == 0)
        return cmx_cli_check(argc - 1, argv + 1);
    if (strcmp(cmd, "reload") == 0)
        return cmx_cli_reload(argc - 1, argv + 1);
    if (strcmp(cmd, "agreements") == 0)
        return cmx_cli_agreements(argc - 1, argv + 1);
    if (strcmp(cmd, "ledger") == 0)
        return cmx_cli_ledger(argc - 1, argv + 1);
    if (strcmp(cmd, "keys") == 0)
        return cmx_cli_keys(argc - 1, argv + 1);
    fprintf(stderr, "cloudmux: unknown command '%s'\n%s", cmd, usage_all);
    return 2;
}
