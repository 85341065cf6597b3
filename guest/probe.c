/*
 * vcrypto guest probe: exercises the Linux guest's virtio_crypto driver through AF_ALG.
 *
 * A bare initramfs guest has no Node, so this is a small static C program (gcc -static).
 * It talks to the kernel's "virtio_crypto_aes_cbc" skcipher BY DRIVER NAME, so a software
 * fallback can never answer in its place, and compares against independent oracles:
 * NIST SP 800-38A F.2.1-F.2.6 (CBC-AES128/192/256) and the kernel's own "cbc(aes-generic)".
 *
 * Usage:
 *   probe [check] [--forks N] [--rounds R]   selftest, known answers, buffer shapes, N processes
 *   probe bench [--seconds S] [--sizes a,b,...]  AES-128-CBC encrypt throughput per size
 *   --watchdog S   fail a check the device has not answered within S seconds (default 60)
 *
 * Output is one line per result, machine-readable by the host (src/vm/probe-report.ts):
 *   ok <name> [details]        a check passed
 *   not ok <name> <reason>     a check failed
 *   bench size=<B> ops=<n> seconds=<s> ops_per_s=<x> mb_per_s=<y>
 *   probe: PASS | probe: FAIL (<n> failed)
 * Exit status: 0 all passed, 1 a check failed, 2 bad usage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <linux/if_alg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef AF_ALG
#define AF_ALG 38
#endif
#ifndef SOL_ALG
#define SOL_ALG 279
#endif

#ifndef DRIVER
#define DRIVER "virtio_crypto_aes_cbc"
#endif
#define ORACLE "cbc(aes-generic)"
#define AES_BLOCK 16
#define PAGE 4096

static int failures;

/*
 * Watchdog: a request the device never completes blocks read() forever. SIGALRM reports which
 * check hung (async-signal-safe write) and ends the probe, so the host sees a named failure
 * instead of only a QEMU timeout.
 */
static char current_check[128] = "start";
static unsigned int watchdog_seconds = 60;

static void on_alarm(int sig)
{
	(void)sig;
	static const char pre[] = "not ok ";
	static const char post[] = " timed out: no answer from the device (watchdog)\nprobe: FAIL (watchdog)\n";
	ssize_t r = write(1, pre, sizeof(pre) - 1);
	r = write(1, current_check, strlen(current_check));
	r = write(1, post, sizeof(post) - 1);
	(void)r;
	_exit(1);
}

/* Names the running check and re-arms the watchdog. */
static void begin_check(const char *name, unsigned int seconds)
{
	snprintf(current_check, sizeof(current_check), "%s", name);
	alarm(seconds);
}

static void ok(const char *name, const char *details)
{
	printf("ok %s%s%s\n", name, details[0] ? " " : "", details);
	fflush(stdout);
}

static void not_ok(const char *name, const char *reason)
{
	printf("not ok %s %s\n", name, reason);
	fflush(stdout);
	failures++;
}

static int hex_to_bytes(const char *hex, uint8_t *out, size_t max)
{
	size_t n = strlen(hex) / 2;
	if (n > max)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned int b;
		if (sscanf(hex + 2 * i, "%2x", &b) != 1)
			return -1;
		out[i] = (uint8_t)b;
	}
	return (int)n;
}

/* Deterministic xorshift64* so a failing run can be replayed. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rng_next(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}
static void rng_fill(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(rng_next() >> 56);
}

/* ---- AF_ALG ------------------------------------------------------------------------------ */

/* A transform socket bound to `alg` with `key` set; -errno on failure. */
static int tfm_open(const char *alg, const uint8_t *key, size_t key_len)
{
	struct sockaddr_alg sa;
	memset(&sa, 0, sizeof(sa));
	sa.salg_family = AF_ALG;
	strcpy((char *)sa.salg_type, "skcipher");
	strncpy((char *)sa.salg_name, alg, sizeof(sa.salg_name) - 1);
	int fd = socket(AF_ALG, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    setsockopt(fd, SOL_ALG, ALG_SET_KEY, key, (socklen_t)key_len) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

/* Sends the operation and IV, plus the first part of the data (more parts follow if `more`). */
static int send_first(int op, int decrypt, const uint8_t iv[AES_BLOCK], const struct iovec *iov, int iovcnt,
		      int more)
{
	char cbuf[CMSG_SPACE(sizeof(uint32_t)) + CMSG_SPACE(sizeof(struct af_alg_iv) + AES_BLOCK)];
	memset(cbuf, 0, sizeof(cbuf));
	struct msghdr msg;
	memset(&msg, 0, sizeof(msg));
	msg.msg_control = cbuf;
	msg.msg_controllen = sizeof(cbuf);
	msg.msg_iov = (struct iovec *)iov;
	msg.msg_iovlen = (size_t)iovcnt;

	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_ALG;
	c->cmsg_type = ALG_SET_OP;
	c->cmsg_len = CMSG_LEN(sizeof(uint32_t));
	uint32_t type = decrypt ? ALG_OP_DECRYPT : ALG_OP_ENCRYPT;
	memcpy(CMSG_DATA(c), &type, sizeof(type));

	c = CMSG_NXTHDR(&msg, c);
	c->cmsg_level = SOL_ALG;
	c->cmsg_type = ALG_SET_IV;
	c->cmsg_len = CMSG_LEN(sizeof(struct af_alg_iv) + AES_BLOCK);
	struct af_alg_iv *aiv = (struct af_alg_iv *)CMSG_DATA(c);
	aiv->ivlen = AES_BLOCK;
	memcpy(aiv->iv, iv, AES_BLOCK);

	size_t want = 0;
	for (int i = 0; i < iovcnt; i++)
		want += iov[i].iov_len;
	ssize_t n = sendmsg(op, &msg, more ? MSG_MORE : 0);
	if (n < 0)
		return -errno;
	return (size_t)n == want ? 0 : -EIO;
}

static int send_all(int op, const uint8_t *p, size_t len, int more)
{
	while (len > 0) {
		ssize_t n = send(op, p, len, more ? MSG_MORE : 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads exactly the sum of the iovec lengths, scattering into the iovecs. */
static int read_all(int op, struct iovec *iov, int iovcnt)
{
	struct iovec local[16];
	if (iovcnt > 16)
		return -EINVAL;
	memcpy(local, iov, sizeof(struct iovec) * (size_t)iovcnt);
	struct iovec *v = local;
	while (iovcnt > 0) {
		ssize_t n = readv(op, v, iovcnt);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		while (n > 0 && iovcnt > 0) {
			if ((size_t)n >= v->iov_len) {
				n -= (ssize_t)v->iov_len;
				v++;
				iovcnt--;
			} else {
				v->iov_base = (uint8_t *)v->iov_base + n;
				v->iov_len -= (size_t)n;
				n = 0;
			}
		}
	}
	return 0;
}

/*
 * One operation on transform `tfm`: `in` is sent in the parts given by `send_parts` (0-terminated
 * list of part lengths, the rest goes in the last part), `out` is read into `read_parts` pieces.
 * `in` and `out` may be the same buffer (in place).
 */
static int crypt_parts(int tfm, int decrypt, const uint8_t iv[AES_BLOCK], const uint8_t *in, uint8_t *out,
		       size_t len, const size_t *send_parts, const size_t *read_parts)
{
	int op = accept4(tfm, NULL, 0, SOCK_CLOEXEC);
	if (op < 0)
		return -errno;
	int rc;
	size_t off = 0;
	size_t first = send_parts && send_parts[0] && send_parts[0] < len ? send_parts[0] : len;
	struct iovec iov = { .iov_base = (void *)in, .iov_len = first };
	rc = send_first(op, decrypt, iv, &iov, 1, first < len);
	off = first;
	for (int i = 1; rc == 0 && off < len; i++) {
		size_t part = send_parts && send_parts[i] && off + send_parts[i] < len ? send_parts[i] : len - off;
		rc = send_all(op, in + off, part, off + part < len);
		off += part;
	}
	if (rc == 0) {
		struct iovec riov[16];
		int cnt = 0;
		size_t roff = 0;
		while (roff < len && cnt < 15 && read_parts && read_parts[cnt] && roff + read_parts[cnt] < len) {
			riov[cnt].iov_base = out + roff;
			riov[cnt].iov_len = read_parts[cnt];
			roff += read_parts[cnt];
			cnt++;
		}
		riov[cnt].iov_base = out + roff;
		riov[cnt].iov_len = len - roff;
		cnt++;
		rc = read_all(op, riov, cnt);
	}
	close(op);
	return rc;
}

static int crypt_once(int tfm, int decrypt, const uint8_t iv[AES_BLOCK], const uint8_t *in, uint8_t *out, size_t len)
{
	return crypt_parts(tfm, decrypt, iv, in, out, len, NULL, NULL);
}

/* ---- checks ------------------------------------------------------------------------------ */

/* /proc/crypto must list our driver with "selftest : passed" (the kernel's testmgr ran at load). */
static void check_selftest(void)
{
	FILE *f = fopen("/proc/crypto", "r");
	if (!f) {
		not_ok("selftest", "cannot open /proc/crypto");
		return;
	}
	char line[256];
	int in_block = 0, found = 0;
	char selftest[128] = "";
	char name[128] = "", cur_name[128] = "";
	while (fgets(line, sizeof(line), f)) {
		char key[64], value[128];
		if (line[0] == '\n') {
			in_block = 0;
			continue;
		}
		if (sscanf(line, "%63s : %127s", key, value) != 2)
			continue;
		if (strcmp(key, "name") == 0) {
			snprintf(cur_name, sizeof(cur_name), "%s", value);
			in_block = 0;
		} else if (strcmp(key, "driver") == 0) {
			in_block = strcmp(value, DRIVER) == 0;
			if (in_block) {
				found = 1;
				memcpy(name, cur_name, sizeof(name));
			}
		} else if (in_block && strcmp(key, "selftest") == 0) {
			snprintf(selftest, sizeof(selftest), "%s", value);
		}
	}
	fclose(f);
	char details[256];
	if (!found) {
		not_ok("selftest", "driver " DRIVER " not in /proc/crypto");
	} else if (strcmp(selftest, "passed") != 0) {
		snprintf(details, sizeof(details), "driver " DRIVER " selftest: %s", selftest[0] ? selftest : "(none)");
		not_ok("selftest", details);
	} else {
		snprintf(details, sizeof(details), "driver=" DRIVER " name=%s selftest=passed", name);
		ok("selftest", details);
	}
}

/* NIST SP 800-38A, Appendix F.2: CBC example vectors (same IV and plaintext for all key sizes). */
static const char *const nist_iv = "000102030405060708090a0b0c0d0e0f";
static const char *const nist_pt = "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
				   "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710";
static const struct {
	const char *name, *key, *ct;
} nist[] = {
	{ "F.2.1/F.2.2 CBC-AES128", "2b7e151628aed2a6abf7158809cf4f3c",
	  "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2"
	  "73bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7" },
	{ "F.2.3/F.2.4 CBC-AES192", "8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b",
	  "4f021db243bc633d7178183a9fa071e8b4d9ada9ad7dedf4e5e738763f69145a"
	  "571b242012fb7ae07fa9baac3df102e008b0e27988598881d920a9e64f5615cd" },
	{ "F.2.5/F.2.6 CBC-AES256", "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
	  "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d"
	  "39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b" },
};

static void check_nist(void)
{
	uint8_t iv[16], pt[64], ct[64], key[32], buf[64 + 8], src[64 + 8];
	hex_to_bytes(nist_iv, iv, sizeof(iv));
	hex_to_bytes(nist_pt, pt, sizeof(pt));
	/* Byte-granular splits like the kernel self-tests use, plus block-aligned ones. */
	static const size_t split_a[] = { 1, 15, 33, 0 };
	static const size_t split_b[] = { 16, 16, 16, 0 };
	static const size_t split_c[] = { 7, 25, 0 };
	for (size_t v = 0; v < sizeof(nist) / sizeof(nist[0]); v++) {
		int klen = hex_to_bytes(nist[v].key, key, sizeof(key));
		hex_to_bytes(nist[v].ct, ct, sizeof(ct));
		char name[96], reason[128];
		int tfm = tfm_open(DRIVER, key, (size_t)klen);
		if (tfm < 0) {
			snprintf(name, sizeof(name), "kat %s", nist[v].name);
			snprintf(reason, sizeof(reason), "bind/setkey " DRIVER ": %s", strerror(-tfm));
			not_ok(name, reason);
			continue;
		}
		struct {
			const char *shape;
			const size_t *send, *read;
			size_t out_off;
			int in_place;
		} shapes[] = {
			{ "one-shot", NULL, NULL, 0, 0 },
			{ "multi-part", split_a, split_c, 0, 0 },
			{ "misaligned", split_c, split_b, 3, 0 },
			{ "in-place", split_b, split_a, 0, 1 },
		};
		for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
			for (int dec = 0; dec <= 1; dec++) {
				const uint8_t *expect = dec ? pt : ct;
				uint8_t *out = buf + shapes[s].out_off;
				/* The input starts at an odd address too for the misaligned shape. */
				uint8_t *in = src + shapes[s].out_off / 2;
				memset(buf, 0, sizeof(buf));
				memcpy(in, dec ? ct : pt, 64);
				if (shapes[s].in_place) {
					memcpy(out, in, 64);
					in = out;
				}
				snprintf(name, sizeof(name), "kat %s %s %s", nist[v].name, dec ? "decrypt" : "encrypt",
					 shapes[s].shape);
				begin_check(name, watchdog_seconds);
				int rc = crypt_parts(tfm, dec, iv, in, out, 64, shapes[s].send, shapes[s].read);
				if (rc < 0) {
					snprintf(reason, sizeof(reason), "AF_ALG: %s", strerror(-rc));
					not_ok(name, reason);
				} else if (memcmp(out, expect, 64) != 0) {
					not_ok(name, "output differs from NIST SP 800-38A");
				} else {
					ok(name, "");
				}
			}
		}
		close(tfm);
	}
}

/*
 * Larger buffers, misaligned and crossing pages, compared with the kernel's software
 * cbc(aes-generic): 64 KiB is the biggest request shape Linux sends (292 descriptors).
 */
static int compare_with_oracle(const char *name, const uint8_t *key, size_t klen, size_t len, size_t in_off,
			       size_t out_off)
{
	int rc = 0;
	char reason[128];
	uint8_t iv[AES_BLOCK];
	uint8_t *in = malloc(len + PAGE), *out = malloc(len + PAGE), *ref = malloc(len);
	int tfm = tfm_open(DRIVER, key, klen);
	int otfm = tfm_open(ORACLE, key, klen);
	if (!in || !out || !ref) {
		not_ok(name, "out of memory");
		rc = -1;
		goto done;
	}
	if (tfm < 0 || otfm < 0) {
		snprintf(reason, sizeof(reason), "bind/setkey %s: %s", tfm < 0 ? DRIVER : ORACLE,
			 strerror(tfm < 0 ? -tfm : -otfm));
		not_ok(name, reason);
		rc = -1;
		goto done;
	}
	rng_fill(iv, sizeof(iv));
	rng_fill(in + in_off, len);
	int e = crypt_once(tfm, 0, iv, in + in_off, out + out_off, len);
	if (e == 0)
		e = crypt_once(otfm, 0, iv, in + in_off, ref, len);
	if (e == 0 && memcmp(out + out_off, ref, len) != 0) {
		not_ok(name, "encrypt differs from " ORACLE);
		rc = -1;
		goto done;
	}
	/* Decrypt in place (output read into the buffer that held the input). */
	if (e == 0)
		e = crypt_once(tfm, 1, iv, out + out_off, out + out_off, len);
	if (e < 0) {
		snprintf(reason, sizeof(reason), "AF_ALG: %s", strerror(-e));
		not_ok(name, reason);
		rc = -1;
	} else if (memcmp(out + out_off, in + in_off, len) != 0) {
		not_ok(name, "decrypt(encrypt(x)) != x");
		rc = -1;
	}
done:
	if (tfm >= 0)
		close(tfm);
	if (otfm >= 0)
		close(otfm);
	free(in);
	free(out);
	free(ref);
	return rc;
}

static void check_shapes(void)
{
	static const struct {
		size_t len, in_off, out_off, klen;
	} cases[] = {
		{ 16, 1, 5, 16 },	{ 4096, 0, 0, 16 },    { 4096, 3328, 768, 16 }, { 16384, 7, 4093, 24 },
		{ 65536, 0, 0, 32 },	{ 65536, 1, 4095, 16 }, { 48, 4090, 4080, 32 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t key[32];
		char name[96];
		rng_fill(key, sizeof(key));
		snprintf(name, sizeof(name), "oracle len=%zu in+%zu out+%zu aes%zu", cases[i].len, cases[i].in_off,
			 cases[i].out_off, cases[i].klen * 8);
		begin_check(name, watchdog_seconds);
		if (compare_with_oracle(name, key, cases[i].klen, cases[i].len, cases[i].in_off, cases[i].out_off) == 0)
			ok(name, "");
	}
}

/*
 * One guest process of the fork test, `rounds` round trips of 16 KiB. Like the lab's
 * test_fork_crypto, processes share what was opened before fork(): odd-numbered ones use the
 * parent's transform (one device session used by several processes at once), even-numbered ones
 * set their own key (their own session).
 */
static int fork_child(int id, int rounds, int shared_tfm, const uint8_t shared_key[16])
{
	rng_state ^= (uint64_t)(id + 1) * 0x100000001b3ULL;
	uint8_t key[16], iv[AES_BLOCK];
	size_t len = 16384;
	uint8_t *in = malloc(len), *enc = malloc(len), *ref = malloc(len), *dec = malloc(len);
	if (!in || !enc || !ref || !dec)
		return 10;
	int tfm;
	if (id % 2 == 1) {
		memcpy(key, shared_key, sizeof(key));
		tfm = shared_tfm;
	} else {
		rng_fill(key, sizeof(key));
		tfm = tfm_open(DRIVER, key, sizeof(key));
	}
	int otfm = tfm_open(ORACLE, key, sizeof(key));
	if (tfm < 0 || otfm < 0)
		return 11;
	for (int r = 0; r < rounds; r++) {
		rng_fill(iv, sizeof(iv));
		rng_fill(in, len);
		if (crypt_once(tfm, 0, iv, in, enc, len) < 0)
			return 12;
		if (crypt_once(otfm, 0, iv, in, ref, len) < 0)
			return 13;
		if (memcmp(enc, ref, len) != 0)
			return 14;
		if (crypt_once(tfm, 1, iv, enc, dec, len) < 0)
			return 15;
		if (memcmp(dec, in, len) != 0)
			return 16;
	}
	close(tfm);
	close(otfm);
	return 0;
}

static void check_forks(int forks, int rounds)
{
	pid_t pids[64];
	int started = 0;
	char name[64], reason[128];
	begin_check("forks", watchdog_seconds * 2);
	uint8_t shared_key[16];
	rng_fill(shared_key, sizeof(shared_key));
	int shared_tfm = tfm_open(DRIVER, shared_key, sizeof(shared_key));
	if (shared_tfm < 0) {
		snprintf(reason, sizeof(reason), "bind/setkey " DRIVER ": %s", strerror(-shared_tfm));
		not_ok("forks", reason);
		return;
	}
	for (int i = 0; i < forks; i++) {
		fflush(stdout);
		pid_t pid = fork();
		if (pid < 0)
			break;
		if (pid == 0)
			_exit(fork_child(i, rounds, shared_tfm, shared_key));
		pids[started++] = pid;
	}
	int passed = 0;
	for (int i = 0; i < started; i++) {
		int status = 0;
		snprintf(name, sizeof(name), "fork %d/%d", i + 1, forks);
		if (waitpid(pids[i], &status, 0) < 0) {
			not_ok(name, "waitpid failed");
		} else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			snprintf(reason, sizeof(reason), "process failed (status %d: 12-13 AF_ALG error, 14 differs "
				 "from " ORACLE ", 16 round trip)", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
			not_ok(name, reason);
		} else {
			passed++;
		}
	}
	close(shared_tfm);
	snprintf(name, sizeof(name), "forks");
	if (started < forks) {
		not_ok(name, "fork() failed");
	} else if (passed == forks) {
		snprintf(reason, sizeof(reason), "processes=%d rounds=%d bytes=16384 concurrent shared-session=%d", forks, rounds,
			 forks / 2);
		ok(name, reason);
	} else {
		snprintf(reason, sizeof(reason), "%d of %d processes failed", forks - passed, forks);
		not_ok(name, reason);
	}
}

/* ---- throughput -------------------------------------------------------------------------- */

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int bench(double seconds, const char *sizes)
{
	uint8_t key[16], iv[AES_BLOCK];
	rng_fill(key, sizeof(key));
	rng_fill(iv, sizeof(iv));
	int tfm = tfm_open(DRIVER, key, sizeof(key));
	if (tfm < 0) {
		printf("not ok bench bind/setkey " DRIVER ": %s\n", strerror(-tfm));
		return 1;
	}
	int op = accept4(tfm, NULL, 0, SOCK_CLOEXEC);
	uint8_t *buf = malloc(65536);
	if (op < 0 || !buf) {
		printf("not ok bench accept: %s\n", strerror(errno));
		return 1;
	}
	rng_fill(buf, 65536);
	const char *p = sizes;
	while (*p) {
		char *end;
		unsigned long size = strtoul(p, &end, 10);
		if (end == p || size == 0 || size > 65536 || size % AES_BLOCK != 0) {
			printf("not ok bench bad size '%s' (multiple of 16, at most 65536)\n", p);
			return 2;
		}
		p = *end == ',' ? end + 1 : end;
		char check[64];
		snprintf(check, sizeof(check), "bench size=%lu", size);
		begin_check(check, (unsigned int)seconds + watchdog_seconds);
		struct iovec iov = { .iov_base = buf, .iov_len = size };
		/* Warm-up, then a timed loop: one request per send+read, like the reference measurements. */
		if (send_first(op, 0, iv, &iov, 1, 0) < 0 || read_all(op, &iov, 1) < 0) {
			printf("not ok bench size=%lu AF_ALG: %s\n", size, strerror(errno));
			return 1;
		}
		unsigned long ops = 0;
		double start = now_seconds(), elapsed;
		do {
			for (int i = 0; i < 8; i++, ops++) {
				iov.iov_len = size;
				if (send_first(op, 0, iv, &iov, 1, 0) < 0 || read_all(op, &iov, 1) < 0) {
					printf("not ok bench size=%lu AF_ALG: %s\n", size, strerror(errno));
					return 1;
				}
			}
			elapsed = now_seconds() - start;
		} while (elapsed < seconds);
		printf("bench size=%lu ops=%lu seconds=%.3f ops_per_s=%.1f mb_per_s=%.3f\n", size, ops, elapsed,
		       (double)ops / elapsed, (double)ops * (double)size / elapsed / 1e6);
		fflush(stdout);
	}
	close(op);
	close(tfm);
	free(buf);
	return 0;
}

static int usage(void)
{
	fprintf(stderr, "usage: probe [check] [--forks N] [--rounds R] [--watchdog S]\n"
			"       probe bench [--seconds S] [--sizes 16,256,4096,16384,65536] [--watchdog S]\n");
	return 2;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	int argi = 1;
	const char *mode = "check";
	if (argi < argc && argv[argi][0] != '-')
		mode = argv[argi++];
	int forks = 4, rounds = 8;
	double seconds = 1.0;
	const char *sizes = "16,64,256,1024,4096,16384,65536";
	for (; argi < argc; argi++) {
		const char *opt = argv[argi];
		const char *val = argi + 1 < argc ? argv[argi + 1] : NULL;
		if (!val)
			return usage();
		argi++;
		if (strcmp(opt, "--forks") == 0)
			forks = atoi(val);
		else if (strcmp(opt, "--rounds") == 0)
			rounds = atoi(val);
		else if (strcmp(opt, "--seconds") == 0)
			seconds = atof(val);
		else if (strcmp(opt, "--sizes") == 0)
			sizes = val;
		else if (strcmp(opt, "--watchdog") == 0)
			watchdog_seconds = (unsigned int)atoi(val);
		else
			return usage();
	}
	if (forks < 1 || forks > 64 || rounds < 1 || !(seconds > 0) || seconds > 3600 || watchdog_seconds < 1)
		return usage();
	signal(SIGALRM, on_alarm);

	if (strcmp(mode, "bench") == 0)
		return bench(seconds, sizes);
	if (strcmp(mode, "check") != 0)
		return usage();

	begin_check("selftest", watchdog_seconds);
	check_selftest();
	check_nist();
	check_shapes();
	check_forks(forks, rounds);
	alarm(0);
	if (failures == 0)
		printf("probe: PASS\n");
	else
		printf("probe: FAIL (%d failed)\n", failures);
	return failures == 0 ? 0 : 1;
}
