// The client half of the handshake (agent/net/client_hello.h): what the
// receiver and the seeder do with a refusal, without a socket.
#include "agent/net/client_hello.h"

#include <gtest/gtest.h>

namespace geosync {
namespace {

HelloExchange Exchange(bool seed, LinkRefusals* refusals) {
  HelloExchange x;
  x.where = "10.0.0.1:5433";
  x.seed = seed;
  x.refusals = refusals;
  return x;
}

HelloReply Refusal(HelloRefusal code) {
  HelloReply r;
  r.accepted = false;
  r.code = code;
  r.source_site = "frankfurt";
  r.error = "no";
  return r;
}

TEST(ClientHelloTest, AStreamingRefusalCarriesItsCodesStatus) {
  LinkRefusals refusals;
  const HelloExchange x = Exchange(false, &refusals);
  Status stale = RefusedBySource(Refusal(HelloRefusal::kStaleSource), x);
  EXPECT_EQ(stale.code(), Code::kFenced);
  EXPECT_EQ(stale.message(),
            "source frankfurt (10.0.0.1:5433) refused this site (stale_source): no");
  // Retryable: the site may be re-seeded or readmitted meanwhile.
  EXPECT_EQ(RefusedBySource(Refusal(HelloRefusal::kDropped), x).code(), Code::kNotFound);
  EXPECT_TRUE(refusals.counts().sources.empty()) << "the source's refusals are not counted here";
}

TEST(ClientHelloTest, ASeedRefusalIsAlwaysFinal) {
  const HelloExchange x = Exchange(true, nullptr);
  Status st = RefusedBySource(Refusal(HelloRefusal::kNoSeeds), x);
  EXPECT_EQ(st.code(), Code::kFenced);
  EXPECT_EQ(st.message(),
            "source frankfurt (10.0.0.1:5433) refused to seed this site (no_seeds): no");
}

TEST(ClientHelloTest, AStaleSourceIsFinalAndAnImpostorIsRetriedAndCounted) {
  LinkRefusals refusals;
  const HelloExchange x = Exchange(false, &refusals);
  Status stale = RefusedHere(HelloVerdict{HelloRefusal::kStaleSource, "epoch 2 < 3", false}, x);
  EXPECT_EQ(stale.code(), Code::kFenced);
  EXPECT_TRUE(refusals.counts().sources.empty());
  Status impostor = RefusedHere(
      HelloVerdict{HelloRefusal::kCertificateMismatch, "certificate for \"x\"", false}, x);
  EXPECT_EQ(impostor.code(), Code::kProtocol);
  EXPECT_EQ(impostor.message(),
            "refusing source at 10.0.0.1:5433 (certificate_mismatch): certificate for \"x\"");
  EXPECT_EQ(refusals.counts().sources.at("certificate_mismatch"), 1u);
  // The seeder's messages say so.
  EXPECT_EQ(
      RefusedHere(HelloVerdict{HelloRefusal::kUnknownSite, "who?", false}, Exchange(true, nullptr))
          .message(),
      "seed: refusing source at 10.0.0.1:5433 (unknown_site): who?");
}

}  // namespace
}  // namespace geosync
