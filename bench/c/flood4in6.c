/*
 * The load generator of bench/tep_alone.ts's flood tests: sends prebuilt UDP datagrams, IPv4
 * inside IPv6 (next header 4) or plain IPv4, as Ethernet frames from an AF_PACKET socket with
 * the qdisc bypassed. A far cheaper sender per packet than iperf3 over a seg6 route, so the
 * forwarder under test, not the sender, sets the rate (the forwarding rate at maximum offered
 * load, RFC 2285 §3.6.2). Checksums are complete. Compiled by the bench with the system's cc;
 * not part of dstm.
 *
 * The frames go through a transmit ring (PACKET_TX_RING, TPACKET_V2; packet_mmap.html): one
 * send(2) hands the kernel up to BATCH frames written in shared memory, without sendmmsg's
 * per-message header and iovec copies and data copy from user memory (about a sixth of the
 * sending CPU at 64 bytes, perf). Each frame carries a virtio_net_hdr whose hdr_len is the
 * whole frame (PACKET_VNET_HDR), so the kernel copies it into the skb's linear part as
 * sendmmsg did — not page fragments of the ring, which a receiver would first have to pull —
 * and the receiving side does the same work per packet as before. Without a ring (an old
 * kernel) it falls back to sendmmsg(2).
 *
 *   flood4in6 IFNAME DST_MAC SRC_MAC SRC6|- DST6|- SRC4 DST4 DPORT PAYLOAD FLOWS SECONDS MAX
 *
 * SRC6 and DST6 "-": plain IPv4 frames. FLOWS: datagrams rotate over that many UDP source
 * ports (10000, 10001, ...), one per frame in turn. Each flow numbers its IPv4 identification
 * 0, 1, 2, ... with DF set, as a connected Linux UDP socket does (ip_select_ident_segs).
 * Bounded: stops after SECONDS seconds or MAX frames, whichever is first. Prints "sent N
 * failed F via tx-ring" (or "via sendmmsg") on stdout.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define MAX_FLOWS 1024
#define RING_FRAMES 1024
#define RING_FRAME 2048

struct vnet_hdr { /* struct virtio_net_hdr, little-endian fields */
  uint8_t flags, gso_type;
  uint16_t hdr_len, gso_size, csum_start, csum_offset;
};

static uint32_t sum16(const uint8_t *p, size_t n, uint32_t s) {
  for (size_t i = 0; i + 1 < n; i += 2) s += (uint32_t)(p[i] << 8 | p[i + 1]);
  if (n & 1) s += (uint32_t)(p[n - 1] << 8);
  return s;
}

static uint16_t fold(uint32_t s) {
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return (uint16_t)~s;
}

static void mac(const char *text, uint8_t *out) {
  unsigned v[6];
  if (sscanf(text, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6) {
    fprintf(stderr, "bad MAC %s\n", text);
    exit(2);
  }
  for (int i = 0; i < 6; i++) out[i] = (uint8_t)v[i];
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/*
 * One frame of flow template `tpl` (`len` bytes, its IPv4 header at `hdr`) into `out`, with
 * IPv4 identification `id`: the template has id 0, so its header checksum is RFC 1624's
 * HC' = ~(~HC + ~m + m') with m = 0, from the template's `csum`.
 */
static void fill(uint8_t *out, const uint8_t *tpl, size_t len, size_t hdr, uint16_t id,
                 uint16_t csum) {
  memcpy(out, tpl, len);
  uint8_t *ip = out + hdr;
  uint32_t c = (uint16_t)~csum;
  c += id;
  ip[4] = (uint8_t)(id >> 8);
  ip[5] = (uint8_t)id;
  uint16_t hc = fold(c);
  ip[10] = (uint8_t)(hc >> 8);
  ip[11] = (uint8_t)hc;
}

int main(int argc, char **argv) {
  if (argc != 13) {
    fprintf(stderr,
            "usage: flood4in6 IFNAME DST_MAC SRC_MAC SRC6|- DST6|- SRC4 DST4 DPORT PAYLOAD FLOWS "
            "SECONDS MAX\n");
    return 2;
  }
  int v6 = strcmp(argv[4], "-") != 0;
  int payload = atoi(argv[9]), flows = atoi(argv[10]);
  double seconds = atof(argv[11]);
  long long max = atoll(argv[12]);
  if (payload < 0 || payload > 1400 || flows < 1 || flows > MAX_FLOWS) {
    fprintf(stderr, "PAYLOAD 0..1400, FLOWS 1..%d\n", MAX_FLOWS);
    return 2;
  }
  static uint8_t frames[MAX_FLOWS][1514];
  size_t len4 = 20 + 8 + (size_t)payload, hdr = 14 + (v6 ? 40 : 0), len = hdr + len4;
  for (int f = 0; f < flows; f++) {
    uint8_t *e = frames[f], *ip = e + hdr, *udp = ip + 20;
    memset(e, 0, len);
    mac(argv[2], e);
    mac(argv[3], e + 6);
    e[12] = v6 ? 0x86 : 0x08;
    e[13] = v6 ? 0xdd : 0x00;
    if (v6) {
      uint8_t *o = e + 14;
      o[0] = 0x60;
      o[4] = (uint8_t)(len4 >> 8);
      o[5] = (uint8_t)len4;
      o[6] = 4; /* next header: IPv4 */
      o[7] = 64;
      if (inet_pton(AF_INET6, argv[4], o + 8) != 1 || inet_pton(AF_INET6, argv[5], o + 24) != 1) {
        fprintf(stderr, "bad IPv6 address\n");
        return 2;
      }
    }
    ip[0] = 0x45;
    ip[2] = (uint8_t)(len4 >> 8);
    ip[3] = (uint8_t)len4;
    ip[6] = 0x40; /* DF */
    ip[8] = 64;
    ip[9] = 17;
    if (inet_pton(AF_INET, argv[6], ip + 12) != 1 || inet_pton(AF_INET, argv[7], ip + 16) != 1) {
      fprintf(stderr, "bad IPv4 address\n");
      return 2;
    }
    uint16_t c = fold(sum16(ip, 20, 0));
    ip[10] = (uint8_t)(c >> 8);
    ip[11] = (uint8_t)c;
    int sport = 10000 + f, dport = atoi(argv[8]);
    udp[0] = (uint8_t)(sport >> 8);
    udp[1] = (uint8_t)sport;
    udp[2] = (uint8_t)(dport >> 8);
    udp[3] = (uint8_t)dport;
    udp[4] = (uint8_t)((8 + payload) >> 8);
    udp[5] = (uint8_t)(8 + payload);
    for (int i = 0; i < payload; i++) udp[8 + i] = (uint8_t)i;
    uint32_t s = sum16(ip + 12, 8, 0) + 17 + (uint32_t)(8 + payload);
    c = fold(sum16(udp, 8 + (size_t)payload, s));
    if (c == 0) c = 0xffff;
    udp[6] = (uint8_t)(c >> 8);
    udp[7] = (uint8_t)c;
  }
  int fd = socket(AF_PACKET, SOCK_RAW, 0);
  if (fd < 0) {
    perror("socket(AF_PACKET)");
    return 1;
  }
  struct sockaddr_ll ll = {.sll_family = AF_PACKET, .sll_ifindex = (int)if_nametoindex(argv[1])};
  if (ll.sll_ifindex == 0 || bind(fd, (struct sockaddr *)&ll, sizeof ll) < 0) {
    perror(argv[1]);
    return 1;
  }
  int one = 1;
  setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one);
  static uint16_t ids[MAX_FLOWS], csums[MAX_FLOWS];
  for (int f = 0; f < flows; f++) csums[f] = (uint16_t)(frames[f][hdr + 10] << 8 | frames[f][hdr + 11]);
  long long sent = 0, failed = 0;
  int next = 0;
  double end = now() + seconds;
  /* The transmit ring: set up before anything is sent; NULL when the kernel refuses it. */
  uint8_t *ring = NULL;
  int vnet = sizeof(struct vnet_hdr);
  struct tpacket_req req = {.tp_block_size = RING_FRAME * 32, .tp_block_nr = RING_FRAMES / 32,
                            .tp_frame_size = RING_FRAME, .tp_frame_nr = RING_FRAMES};
  int v2 = TPACKET_V2;
  if (len + (size_t)vnet + 32 <= RING_FRAME &&
      setsockopt(fd, SOL_PACKET, PACKET_VERSION, &v2, sizeof v2) == 0 &&
      setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) == 0 &&
      setsockopt(fd, SOL_PACKET, PACKET_TX_RING, &req, sizeof req) == 0) {
    ring = mmap(NULL, (size_t)RING_FRAMES * RING_FRAME, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (ring == MAP_FAILED) ring = NULL;
  }
  if (ring == NULL) {
    /* Without PACKET_VNET_HDR again: sendmmsg frames carry no virtio header. */
    int zero = 0;
    setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &zero, sizeof zero);
  }
  int head = 0;
  while (ring != NULL && sent + failed < max && now() < end) {
    int n = 0;
    while (n < BATCH && sent + failed + n < max) {
      uint8_t *frame = ring + (size_t)head * RING_FRAME;
      struct tpacket2_hdr *h = (struct tpacket2_hdr *)frame;
      uint32_t status = __atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE);
      if (status == TP_STATUS_WRONG_FORMAT) {
        failed++;
        status = TP_STATUS_AVAILABLE;
      }
      if (status != TP_STATUS_AVAILABLE) break;
      uint8_t *data = frame + TPACKET2_HDRLEN - sizeof(struct sockaddr_ll);
      struct vnet_hdr vh = {.hdr_len = (uint16_t)len}; /* all of it linear (x86: LE) */
      memcpy(data, &vh, sizeof vh);
      fill(data + vnet, frames[next], len, hdr, ids[next]++, csums[next]);
      next = (next + 1) % flows;
      h->tp_len = (uint32_t)(vnet + (int)len);
      __atomic_store_n(&h->tp_status, TP_STATUS_SEND_REQUEST, __ATOMIC_RELEASE);
      head = (head + 1) % RING_FRAMES;
      n++;
    }
    if (n == 0) {
      /* Every frame still in flight: wait for the kernel to hand some back. */
      struct pollfd p = {.fd = fd, .events = POLLOUT};
      poll(&p, 1, 10);
    }
    /* Blocking: returns once every requested frame went (the veth delivers at once). */
    if (send(fd, NULL, 0, 0) < 0) {
      if (errno != ENOBUFS && errno != EAGAIN && errno != EINTR) {
        perror("send (tx ring)");
        return 1;
      }
      failed++; /* the frame the kernel could not queue (it sends the rest on the next call) */
      n--;
    }
    sent += n;
  }
  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  static uint8_t out[BATCH][1514];
  while (ring == NULL && sent + failed < max && now() < end) {
    int n = BATCH;
    if (max - sent - failed < n) n = (int)(max - sent - failed);
    for (int i = 0; i < n; i++) {
      fill(out[i], frames[next], len, hdr, ids[next]++, csums[next]);
      iov[i].iov_base = out[i];
      iov[i].iov_len = len;
      next = (next + 1) % flows;
      memset(&msgs[i], 0, sizeof msgs[i]);
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int r = sendmmsg(fd, msgs, (unsigned)n, 0);
    if (r < 0) {
      if (errno != ENOBUFS && errno != EAGAIN && errno != EINTR) {
        perror("sendmmsg");
        return 1;
      }
      failed += n;
    } else
      sent += r;
  }
  printf("sent %lld failed %lld via %s\n", sent, failed, ring != NULL ? "tx-ring" : "sendmmsg");
  return 0;
}
