// Sockets whose whole state is in the process come back as they were (issue 9): UDP, listening
// TCP, Unix sockets of every type with no peer outside the process, pseudo-terminal pairs. The
// targets check names, peers, options, queued messages and passed descriptors themselves.
// Sockets whose state is not all local are refused before the freeze, naming why.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>

#include <gtest/gtest.h>

#include "support/roundtrip.h"

namespace ferry::test {
namespace {

void round_trip(const std::string& mode) {
  target_survives_round_trip("t_sockets", {mode, "@DIR"});
}

}  // namespace

TEST(SocketsTest, UdpBoundAndConnected) {
  round_trip("udp");
}
TEST(SocketsTest, UdpOverIpv6) {
  round_trip("udp6");
}
TEST(SocketsTest, ATcpListener) {
  round_trip("tcp-listen");
}
TEST(SocketsTest, AStreamSocketpairWithQueuedDataAndAPassedDescriptor) {
  round_trip("pair-stream");
}
TEST(SocketsTest, ADatagramSocketpair) {
  round_trip("pair-dgram");
}
TEST(SocketsTest, ASeqpacketSocketpair) {
  round_trip("pair-seqpacket");
}
TEST(SocketsTest, UnixSocketsBoundToPaths) {
  round_trip("unix-path");
}
TEST(SocketsTest, UnixSocketsWithAbstractNames) {
  round_trip("unix-abstract");
}
TEST(SocketsTest, AConnectionAcceptedFromAListenerOfTheProcess) {
  round_trip("unix-accepted");
}
TEST(SocketsTest, AStreamWhosePeerClosed) {
  round_trip("dead-peer");
}
TEST(SocketsTest, APseudoTerminalPair) {
  round_trip("pty");
}

}  // namespace ferry::test
