/* The cheapest possible milter, as a yardstick for bench/milter_throughput.py.
 *
 * It negotiates the same session as bouncemilter (no CONNECT event, no-reply events) and makes
 * the same decisions - ordinary mail accepted at DATA, mail to a recipient in the bounce domain
 * read to the end and accepted - but does no work at all: no parsing, no classification, no
 * store. Whatever throughput it costs Postfix is the price of having any libmilter milter in
 * smtpd_milters on the machine, so no milter can do better than this one.
 *
 *   gcc -O2 -o floor_milter floor_milter.c -lmilter -lpthread
 *   ./floor_milter unix:/path/to.sock @sink.test [reply]
 *
 * "reply" asks for a reply to every event instead of no-reply events, as bouncemilter does on TCP
 * (Postfix's unanswered packets would otherwise wait for delayed ACKs; see deploy/postfix/README.md).
 */
#include <libmilter/mfapi.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *bounce_domain; /* e.g. "@sink.test" */
static int reply_all;               /* 1: a reply to every event (TCP) */

static sfsistat fl_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2,
                             unsigned long f3, unsigned long *pf0, unsigned long *pf1,
                             unsigned long *pf2, unsigned long *pf3) {
    unsigned long no_reply = SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT | SMFIP_NR_HDR | SMFIP_NR_EOH;
    unsigned long want = SMFIP_NOCONNECT | SMFIP_NOUNKNOWN | SMFIP_SKIP | (reply_all ? 0 : no_reply);
    (void)ctx; (void)f2; (void)f3;
    *pf0 = f0 & SMFIF_ADDHDRS;
    *pf1 = f1 & want;
    *pf2 = 0;
    *pf3 = 0;
    return SMFIS_CONTINUE;
}

static sfsistat fl_helo(SMFICTX *ctx, char *name) { (void)ctx; (void)name; return reply_all ? SMFIS_CONTINUE : SMFIS_NOREPLY; }

static sfsistat fl_mail(SMFICTX *ctx, char **argv) {
    (void)argv;
    smfi_setpriv(ctx, NULL);
    return reply_all ? SMFIS_CONTINUE : SMFIS_NOREPLY;
}

static sfsistat fl_rcpt(SMFICTX *ctx, char **argv) {
    size_t n = strlen(argv[0]), d = strlen(bounce_domain);
    const char *end = argv[0] + n;
    if (n && end[-1] == '>') { end--; n--; }
    if (n >= d && strncasecmp(end - d, bounce_domain, d) == 0)
        smfi_setpriv(ctx, (void *)1);
    return reply_all ? SMFIS_CONTINUE : SMFIS_NOREPLY;
}

static sfsistat fl_data(SMFICTX *ctx) { return smfi_getpriv(ctx) ? SMFIS_CONTINUE : SMFIS_ACCEPT; }
static sfsistat fl_header(SMFICTX *ctx, char *f, char *v) { (void)ctx; (void)f; (void)v; return reply_all ? SMFIS_CONTINUE : SMFIS_NOREPLY; }
static sfsistat fl_eoh(SMFICTX *ctx) { (void)ctx; return reply_all ? SMFIS_CONTINUE : SMFIS_NOREPLY; }
static sfsistat fl_body(SMFICTX *ctx, unsigned char *b, size_t n) { (void)ctx; (void)b; (void)n; return SMFIS_CONTINUE; }
static sfsistat fl_eom(SMFICTX *ctx) { smfi_setpriv(ctx, NULL); return SMFIS_ACCEPT; }
static sfsistat fl_abort(SMFICTX *ctx) { smfi_setpriv(ctx, NULL); return SMFIS_CONTINUE; }
static sfsistat fl_close(SMFICTX *ctx) { (void)ctx; return SMFIS_CONTINUE; }

int main(int argc, char **argv) {
    struct smfiDesc desc;
    if (argc < 3 || argc > 4 || (argc == 4 && strcmp(argv[3], "reply") != 0)) {
        fprintf(stderr, "usage: %s SOCKET @bounce.domain [reply]\n", argv[0]);
        return 2;
    }
    bounce_domain = argv[2];
    reply_all = argc == 4;
    memset(&desc, 0, sizeof desc);
    desc.xxfi_name = "floor";
    desc.xxfi_version = SMFI_VERSION;
    desc.xxfi_flags = SMFIF_ADDHDRS;
    desc.xxfi_helo = fl_helo;
    desc.xxfi_envfrom = fl_mail;
    desc.xxfi_envrcpt = fl_rcpt;
    desc.xxfi_data = fl_data;
    desc.xxfi_header = fl_header;
    desc.xxfi_eoh = fl_eoh;
    desc.xxfi_body = fl_body;
    desc.xxfi_eom = fl_eom;
    desc.xxfi_abort = fl_abort;
    desc.xxfi_close = fl_close;
    desc.xxfi_negotiate = fl_negotiate;
    if (smfi_setconn(argv[1]) == MI_FAILURE || smfi_register(desc) == MI_FAILURE ||
        smfi_opensocket(1) == MI_FAILURE) {
        fprintf(stderr, "floor_milter: cannot listen on %s\n", argv[1]);
        return 1;
    }
    return smfi_main() == MI_SUCCESS ? 0 : 1;
}
