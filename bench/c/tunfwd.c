/*
 * A minimal 4over6 TUN forwarder, the baseline of bench/tep_alone.ts: what a small C program
 * with one blocking thread per direction does, nothing more (no binding check, no fragments,
 * no ICMP). Compiled by the bench with the system's cc; not part of dstm.
 *
 *   tunfwd TUN_NAME LOCAL_IPV6 PEER_IPV6
 *
 * Decapsulation: recv() on a raw IPv6 socket for next header 4 (the kernel strips the outer
 * header) -> write() into the TUN. Encapsulation: read() from the TUN -> sendto() PEER_IPV6.
 * The TUN is created here (IFF_TUN | IFF_NO_PI); the caller sets it up and routes into it.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static int tun, raw;
static struct sockaddr_in6 peer;

static void *decap(void *arg) {
  (void)arg;
  static unsigned char buf[65536];
  for (;;) {
    ssize_t n = recv(raw, buf, sizeof buf, 0);
    if (n > 0 && write(tun, buf, (size_t)n) < 0) { /* dropped, as a router would */ }
  }
  return NULL;
}

static void *encap(void *arg) {
  (void)arg;
  static unsigned char buf[65536];
  for (;;) {
    ssize_t n = read(tun, buf, sizeof buf);
    if (n > 0) sendto(raw, buf, (size_t)n, 0, (struct sockaddr *)&peer, sizeof peer);
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s TUN_NAME LOCAL_IPV6 PEER_IPV6\n", argv[0]);
    return 2;
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  strncpy(ifr.ifr_name, argv[1], IFNAMSIZ - 1);
  tun = open("/dev/net/tun", O_RDWR);
  if (tun < 0 || ioctl(tun, TUNSETIFF, &ifr) < 0) { perror("tun"); return 1; }
  raw = socket(AF_INET6, SOCK_RAW, IPPROTO_IPIP);
  if (raw < 0) { perror("socket"); return 1; }
  int size = 4 << 20;
  setsockopt(raw, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  setsockopt(raw, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  struct sockaddr_in6 local;
  memset(&local, 0, sizeof local);
  local.sin6_family = AF_INET6;
  memset(&peer, 0, sizeof peer);
  peer.sin6_family = AF_INET6;
  if (inet_pton(AF_INET6, argv[2], &local.sin6_addr) != 1 ||
      inet_pton(AF_INET6, argv[3], &peer.sin6_addr) != 1) {
    fprintf(stderr, "bad IPv6 address\n");
    return 2;
  }
  if (bind(raw, (struct sockaddr *)&local, sizeof local) < 0) { perror("bind"); return 1; }
  printf("ready\n");
  fflush(stdout);
  pthread_t t;
  pthread_create(&t, NULL, decap, NULL);
  encap(NULL);
  return 0;
}
