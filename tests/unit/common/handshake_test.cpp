// The trust rules of a site link (common/handshake.h) against hostile input:
// Hellos from strangers, other clusters, the wrong certificate and epochs
// that could not have been issued; source replies with the wrong name; acks
// beyond what a session sent; plaintext listen addresses.
#include "common/handshake.h"

#include <gtest/gtest.h>

namespace geosync {
namespace {

constexpr uint64_t kHugeEpoch = uint64_t{1} << 62;

HelloPolicy TlsSource() {
  HelloPolicy p;
  p.cluster_id = "prod";
  p.self = "frankfurt";
  p.epoch = 3;
  p.sites = {"dublin", "virginia"};
  p.tls = true;
  p.peer_cn = "dublin";
  p.epoch_ends = {Position{1, Lsn(0x3000)}, Position{2, Lsn(0x5000)}};
  return p;
}

Hello FromDublin(uint64_t epoch = 3) {
  Hello h;
  h.cluster_id = "prod";
  h.site_name = "dublin";
  h.epoch = epoch;
  h.durable = Position{3, Lsn(0x6000)};
  return h;
}

TEST(HandshakeTest, AKnownSiteWithItsOwnCertificateIsAccepted) {
  HelloVerdict v = CheckHello(FromDublin(), TlsSource());
  EXPECT_TRUE(v.ok()) << v.message;
  EXPECT_FALSE(v.may_report_epoch);
}

TEST(HandshakeTest, UnknownSiteWithAHugeEpochIsRefusedAndCannotFence) {
  Hello h = FromDublin(kHugeEpoch);
  h.site_name = "lisbon";
  HelloPolicy p = TlsSource();
  p.peer_cn = "lisbon";
  HelloVerdict v = CheckHello(h, p);
  EXPECT_EQ(v.code, HelloRefusal::kUnknownSite);
  EXPECT_FALSE(v.may_report_epoch) << "a stranger's epoch must never fence the source";
  EXPECT_EQ(v.message, "unknown site \"lisbon\": add it to \"sites\" in the source's config");
}

TEST(HandshakeTest, AnotherClusterWithAHigherEpochIsRefusedAndCannotFence) {
  Hello h = FromDublin(4);
  h.cluster_id = "staging";
  HelloVerdict v = CheckHello(h, TlsSource());
  EXPECT_EQ(v.code, HelloRefusal::kOtherCluster);
  EXPECT_FALSE(v.may_report_epoch);
  EXPECT_EQ(v.message, "site dublin belongs to cluster \"staging\", this source to \"prod\"");
}

TEST(HandshakeTest, ACertificateForAnotherSiteIsRefusedAndCannotFence) {
  HelloPolicy p = TlsSource();
  p.peer_cn = "virginia";  // a real deployment certificate, for another site
  HelloVerdict v = CheckHello(FromDublin(4), p);
  EXPECT_EQ(v.code, HelloRefusal::kCertificateMismatch);
  EXPECT_FALSE(v.may_report_epoch);
  EXPECT_EQ(v.message, "site says it is \"dublin\" but its certificate is for \"virginia\"");
}

TEST(HandshakeTest, AHelloNamingTheSourceItselfIsRefused) {
  Hello h = FromDublin(4);
  h.site_name = "frankfurt";
  HelloPolicy p = TlsSource();
  p.sites.push_back("frankfurt");  // even when the config lists it by mistake
  p.peer_cn = "frankfurt";
  HelloVerdict v = CheckHello(h, p);
  EXPECT_EQ(v.code, HelloRefusal::kUnknownSite);
  EXPECT_FALSE(v.may_report_epoch);
}

TEST(HandshakeTest, AnAuthenticatedSiteWithAHugeEpochIsRefusedAndCannotFence) {
  HelloVerdict v = CheckHello(FromDublin(kHugeEpoch), TlsSource());
  EXPECT_EQ(v.code, HelloRefusal::kImpossibleEpoch);
  EXPECT_FALSE(v.may_report_epoch);
  EXPECT_NE(v.message.find("above the largest epoch"), std::string::npos) << v.message;
}

TEST(HandshakeTest, AnEpochJumpBeyondTheBoundIsRefusedAndCannotFence) {
  HelloVerdict v = CheckHello(FromDublin(3 + kMaxEpochJump + 1), TlsSource());
  EXPECT_EQ(v.code, HelloRefusal::kImpossibleEpoch);
  EXPECT_FALSE(v.may_report_epoch);
  v = CheckHello(FromDublin(3 + kMaxEpochJump), TlsSource());
  EXPECT_EQ(v.code, HelloRefusal::kStaleSource) << "a jump of exactly the bound is plausible";
  EXPECT_TRUE(v.may_report_epoch);
}

TEST(HandshakeTest, AnAuthenticatedSiteWithTheNextEpochFencesTheSource) {
  HelloVerdict v = CheckHello(FromDublin(4), TlsSource());
  EXPECT_EQ(v.code, HelloRefusal::kStaleSource);
  EXPECT_TRUE(v.may_report_epoch);
  EXPECT_NE(v.message.find("this source is stale and stops shipping"), std::string::npos);
}

TEST(HandshakeTest, WithoutTlsAKnownSiteOfTheClusterMayReportAnEpoch) {
  HelloPolicy p = TlsSource();
  p.tls = false;
  p.peer_cn.clear();
  HelloVerdict v = CheckHello(FromDublin(4), p);
  EXPECT_EQ(v.code, HelloRefusal::kStaleSource);
  EXPECT_TRUE(v.may_report_epoch);
  Hello stranger = FromDublin(4);
  stranger.site_name = "lisbon";
  EXPECT_FALSE(CheckHello(stranger, p).may_report_epoch);
}

TEST(HandshakeTest, ProtocolVersionsOutsideTheServedRangeAreRefused) {
  Hello h = FromDublin();
  h.protocol_version = kMinProtocolVersion;
  EXPECT_TRUE(CheckHello(h, TlsSource()).ok()) << "protocol 2 replicas are still served";
  for (uint32_t version : {kMinProtocolVersion - 1, kProtocolVersion + 1}) {
    h.protocol_version = version;
    HelloVerdict v = CheckHello(h, TlsSource());
    EXPECT_EQ(v.code, HelloRefusal::kProtocolVersion) << version;
    EXPECT_FALSE(v.may_report_epoch);
  }
}

TEST(HandshakeTest, ASiteHoldingMoreOfAnEndedEpochHasDiverged) {
  Hello h = FromDublin();
  h.durable = Position{2, Lsn(0x5001)};
  HelloVerdict v = CheckHello(h, TlsSource());
  EXPECT_EQ(v.code, HelloRefusal::kDiverged);
  EXPECT_FALSE(v.may_report_epoch);
  h.durable = Position{2, Lsn(0x5000)};
  EXPECT_TRUE(CheckHello(h, TlsSource()).ok());
}

TEST(HandshakeTest, EpochClaimsAreBoundedAboveAndByTheJump) {
  EXPECT_EQ(ClassifyEpoch(1, 1), EpochClaim::kNotHigher);
  EXPECT_EQ(ClassifyEpoch(0, 5), EpochClaim::kNotHigher);
  EXPECT_EQ(ClassifyEpoch(2, 1), EpochClaim::kHigher);
  EXPECT_EQ(ClassifyEpoch(1 + kMaxEpochJump, 1), EpochClaim::kHigher);
  EXPECT_EQ(ClassifyEpoch(2 + kMaxEpochJump, 1), EpochClaim::kImpossible);
  EXPECT_EQ(ClassifyEpoch(kMaxEpoch, kMaxEpoch - 1), EpochClaim::kHigher);
  EXPECT_EQ(ClassifyEpoch(kMaxEpoch + 1, kMaxEpoch), EpochClaim::kImpossible);
  EXPECT_EQ(ClassifyEpoch(UINT64_MAX, UINT64_MAX - 1), EpochClaim::kImpossible)
      << "no overflow at the top";
  EXPECT_EQ(ClassifyEpoch(kHugeEpoch, 1), EpochClaim::kImpossible);
}

SourcePolicy TlsReplica() {
  SourcePolicy p;
  p.self = "dublin";
  p.epoch = 3;
  p.sites = {"frankfurt", "dublin", "virginia"};
  p.tls = true;
  p.peer_cn = "frankfurt";
  return p;
}

HelloReply FromFrankfurt(uint64_t epoch = 3) {
  HelloReply r;
  r.accepted = true;
  r.source_site = "frankfurt";
  r.source_epoch = epoch;
  return r;
}

TEST(HandshakeTest, TheExpectedSourceWithItsCertificateIsAccepted) {
  SourcePolicy p = TlsReplica();
  p.expected_site = "frankfurt";
  EXPECT_TRUE(CheckSourceReply(FromFrankfurt(), p).ok());
  EXPECT_TRUE(CheckSourceReply(FromFrankfurt(4), p).ok()) << "one promotion ahead: adopt it";
}

TEST(HandshakeTest, ACertificateForAnotherSiteThanExpectedIsRefusedNamingBoth) {
  SourcePolicy p = TlsReplica();
  p.expected_site = "frankfurt";
  p.peer_cn = "virginia";
  HelloReply r = FromFrankfurt(9);
  r.source_site = "virginia";
  HelloVerdict v = CheckSourceReply(r, p);
  EXPECT_EQ(v.code, HelloRefusal::kCertificateMismatch);
  EXPECT_EQ(v.message, "expected source \"frankfurt\" but its certificate names \"virginia\"");
}

TEST(HandshakeTest, TheExpectedSourceIsCheckedAgainstTheCertificateNotTheClaim) {
  SourcePolicy p = TlsReplica();
  p.expected_site = "frankfurt";
  p.peer_cn = "virginia";  // a deployment certificate, presented by whoever says "frankfurt"
  HelloVerdict v = CheckSourceReply(FromFrankfurt(9), p);
  EXPECT_EQ(v.code, HelloRefusal::kCertificateMismatch);
  EXPECT_EQ(v.message, "expected source \"frankfurt\" but its certificate names \"virginia\"");
}

TEST(HandshakeTest, AReplyClaimingAnotherNameThanItsCertificateIsRefused) {
  SourcePolicy p = TlsReplica();
  p.peer_cn = "virginia";
  HelloVerdict v = CheckSourceReply(FromFrankfurt(), p);
  EXPECT_EQ(v.code, HelloRefusal::kCertificateMismatch);
  EXPECT_EQ(v.message,
            "the source says it is \"frankfurt\" but its certificate is for \"virginia\"");
}

TEST(HandshakeTest, ASourceCertificateOutsideTheDeploymentIsRefused) {
  SourcePolicy p = TlsReplica();
  p.peer_cn = "lisbon";
  HelloReply r = FromFrankfurt();
  r.source_site = "lisbon";
  HelloVerdict v = CheckSourceReply(r, p);
  EXPECT_EQ(v.code, HelloRefusal::kUnknownSite);
  EXPECT_NE(v.message.find("\"lisbon\""), std::string::npos) << v.message;
}

TEST(HandshakeTest, ASourceWithTheReplicasOwnNameIsRefusedEvenWithoutASiteList) {
  SourcePolicy p = TlsReplica();
  p.sites.clear();
  p.peer_cn = "dublin";
  HelloReply r = FromFrankfurt();
  r.source_site = "dublin";
  EXPECT_EQ(CheckSourceReply(r, p).code, HelloRefusal::kUnknownSite);
  p.peer_cn = "anything";
  r.source_site = "anything";
  EXPECT_TRUE(CheckSourceReply(r, p).ok()) << "without a site list any other name will do";
}

TEST(HandshakeTest, WithoutTlsTheClaimedSourceNameIsChecked) {
  SourcePolicy p = TlsReplica();
  p.tls = false;
  p.peer_cn.clear();
  p.expected_site = "frankfurt";
  EXPECT_TRUE(CheckSourceReply(FromFrankfurt(), p).ok());
  HelloReply r = FromFrankfurt();
  r.source_site = "virginia";
  HelloVerdict v = CheckSourceReply(r, p);
  EXPECT_EQ(v.code, HelloRefusal::kCertificateMismatch);
  EXPECT_EQ(v.message, "expected source \"frankfurt\" but it says it is \"virginia\"");
}

TEST(HandshakeTest, ASourceEpochThatCouldNotHaveBeenIssuedIsNotAdopted) {
  for (uint64_t epoch : {kHugeEpoch, uint64_t{3} + kMaxEpochJump + 1}) {
    HelloVerdict v = CheckSourceReply(FromFrankfurt(epoch), TlsReplica());
    EXPECT_EQ(v.code, HelloRefusal::kImpossibleEpoch) << epoch;
  }
}

TEST(HandshakeTest, AStaleSourceIsRefused) {
  HelloVerdict v = CheckSourceReply(FromFrankfurt(2), TlsReplica());
  EXPECT_EQ(v.code, HelloRefusal::kStaleSource);
  EXPECT_NE(v.message.find("refusing a stream from a stale primary"), std::string::npos);
}

TEST(HandshakeTest, RefusalsAboutIdentityAndEpochsStopTheReplicaOthersRetry) {
  for (HelloRefusal r :
       {HelloRefusal::kOtherCluster, HelloRefusal::kUnknownSite, HelloRefusal::kCertificateMismatch,
        HelloRefusal::kImpossibleEpoch, HelloRefusal::kStaleSource, HelloRefusal::kDiverged}) {
    EXPECT_EQ(RefusalCode(r), Code::kFenced) << HelloRefusalName(r);
  }
  for (HelloRefusal r : {HelloRefusal::kUnspecified, HelloRefusal::kDropped,
                         HelloRefusal::kNeedsSeed, HelloRefusal::kNoSeeds}) {
    EXPECT_EQ(RefusalCode(r), Code::kNotFound) << HelloRefusalName(r);
  }
  EXPECT_EQ(RefusalCode(HelloRefusal::kProtocolVersion), Code::kProtocol);
}

AckBound Sent(Position sent) { return AckBound{sent, 3, Lsn(0x9000)}; }

TEST(HandshakeTest, AnAckUpToWhatWasSentIsAccepted) {
  Ack ack{Position{3, Lsn(0x6000)}, Position{3, Lsn(0x6000)}, Position{3, Lsn(0x6038)}, 0};
  EXPECT_TRUE(CheckAck(ack, Sent(Position{3, Lsn(0x6000)})).ok())
      << "applied is the end of the commit record, a little past its unit";
  EXPECT_TRUE(CheckAck(Ack{}, Sent(Position{})).ok()) << "an empty replica acks nothing";
}

TEST(HandshakeTest, AnAckBeyondWhatWasSentIsRefused) {
  const Position sent{3, Lsn(0x6000)};
  Ack durable{sent, Position{3, Lsn(0x6001)}, sent, 0};
  Status st = CheckAck(durable, Sent(sent));
  EXPECT_EQ(st.code(), Code::kProtocol);
  EXPECT_EQ(st.message(),
            "ack claims durable 3@0/6001 but this session sent only up to 3@0/6000: a forged or "
            "broken ack");
  Ack received{Position{4, Lsn(1)}, sent, sent, 0};
  EXPECT_FALSE(CheckAck(received, Sent(sent)).ok()) << "a later epoch is further";
  Ack far{Position{3, Lsn(0xFFFFFFFF00)}, Position{3, Lsn(0xFFFFFFFF00)}, sent, 0};
  EXPECT_FALSE(CheckAck(far, Sent(sent)).ok());
}

TEST(HandshakeTest, AnAppliedPositionOfAnotherEpochOrPastTheWalIsRefused) {
  const Position sent{3, Lsn(0x6000)};
  Ack epoch{sent, sent, Position{4, Lsn(1)}, 0};
  EXPECT_FALSE(CheckAck(epoch, Sent(sent)).ok());
  Ack wal{sent, sent, Position{3, Lsn(0x9001)}, 0};
  EXPECT_FALSE(CheckAck(wal, Sent(sent)).ok());
  Ack old{sent, sent, Position{2, Lsn(0xFFFFFF)}, 0};
  EXPECT_TRUE(CheckAck(old, Sent(sent)).ok()) << "LSNs of an older epoch are another primary's";
  AckBound unknown_wal{sent, 3, Lsn()};
  EXPECT_TRUE(CheckAck(wal, unknown_wal).ok());
}

TEST(HandshakeTest, OnlyLoopbackMayListenWithoutTls) {
  for (const char* host : {"127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"}) {
    EXPECT_TRUE(IsLoopbackAddress(host)) << host;
    EXPECT_TRUE(CheckPlaintextListen(host, false).ok()) << host;
  }
  for (const char* host : {"0.0.0.0", "::", "10.0.0.5", "128.0.0.1", "::2", "localhost", ""}) {
    EXPECT_FALSE(IsLoopbackAddress(host)) << host;
    Status st = CheckPlaintextListen(host, false);
    EXPECT_EQ(st.code(), Code::kConfig) << host;
    EXPECT_NE(st.message().find("allow_plaintext_links"), std::string::npos);
    EXPECT_TRUE(CheckPlaintextListen(host, true).ok()) << "explicitly allowed: " << host;
  }
}

// The stream server's admission (AdmitHello): the trust rules first, then
// what this source serves.
TEST(AdmitHelloTest, ASeedHelloWithoutASeedServerIsRefusedAndCannotFence) {
  Hello h = FromDublin();
  h.flags = kHelloNeedsSeed;
  HelloVerdict v = AdmitHello(h, TlsSource(), SourceOffer{false, false});
  EXPECT_EQ(v.code, HelloRefusal::kNoSeeds);
  EXPECT_FALSE(v.may_report_epoch);
  EXPECT_TRUE(AdmitHello(h, TlsSource(), SourceOffer{true, false}).ok());
}

TEST(AdmitHelloTest, ADroppedSiteMayStillAskForASeedButNotStream) {
  Hello stream = FromDublin();
  HelloVerdict v = AdmitHello(stream, TlsSource(), SourceOffer{true, true});
  EXPECT_EQ(v.code, HelloRefusal::kDropped);
  EXPECT_FALSE(v.may_report_epoch);
  EXPECT_EQ(v.message,
            "site dublin was dropped from spool retention (the spool reached spool.max_mb while "
            "it lagged) and needs a re-seed: run `geosyncctl seed --site dublin`");
  Hello seed = FromDublin();
  seed.flags = kHelloNeedsSeed;
  EXPECT_TRUE(AdmitHello(seed, TlsSource(), SourceOffer{true, true}).ok());
}

TEST(AdmitHelloTest, TrustRulesComeBeforeWhatTheSourceServes) {
  // A stranger asking for a seed from a source without one hears that it is
  // unknown, not that seeds are not served: nothing is said to strangers
  // about what this source can do.
  Hello h = FromDublin();
  h.site_name = "lisbon";
  h.flags = kHelloNeedsSeed;
  HelloPolicy p = TlsSource();
  p.peer_cn = "lisbon";
  EXPECT_EQ(AdmitHello(h, p, SourceOffer{false, true}).code, HelloRefusal::kUnknownSite);
  // A known site at a higher epoch still may make the source fence itself.
  HelloVerdict higher = AdmitHello(FromDublin(4), TlsSource(), SourceOffer{true, true});
  EXPECT_FALSE(higher.ok());
  EXPECT_TRUE(higher.may_report_epoch);
}

}  // namespace
}  // namespace geosync
