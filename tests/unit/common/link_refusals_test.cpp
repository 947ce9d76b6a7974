// LinkRefusals: counts of refused link inputs and their Prometheus text.
#include "common/link_refusals.h"

#include <gtest/gtest.h>

namespace geosync {
namespace {

TEST(LinkRefusalsTest, SourceFamiliesAppearWithZeroesBeforeAnyRefusal) {
  std::string text = LinkRefusalMetricsText(LinkRefusals().counts(), true);
  EXPECT_NE(text.find("# TYPE geosync_refused_hellos_total counter"), std::string::npos);
  EXPECT_NE(text.find("geosync_refused_acks_total 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("# TYPE geosync_refused_peer_epochs_total counter"), std::string::npos);
  EXPECT_EQ(text.find("geosync_refused_sources_total"), std::string::npos)
      << "the replica's family is not the source's";
}

TEST(LinkRefusalsTest, RefusalsAreCountedByReason) {
  LinkRefusals r;
  r.Hello("unknown_site");
  r.Hello("unknown_site");
  r.Hello("other_cluster");
  r.Ack();
  r.PeerEpoch("dub\"lin");
  r.Source("certificate_mismatch");
  std::string text = LinkRefusalMetricsText(r.counts(), true);
  EXPECT_NE(text.find("geosync_refused_hellos_total{reason=\"unknown_site\"} 2\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("geosync_refused_hellos_total{reason=\"other_cluster\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("geosync_refused_acks_total 1\n"), std::string::npos);
  EXPECT_NE(text.find("geosync_refused_peer_epochs_total{site=\"dub\\\"lin\"} 1\n"),
            std::string::npos)
      << "label values are escaped: " << text;
  std::string replica = LinkRefusalMetricsText(r.counts(), false);
  EXPECT_NE(replica.find("geosync_refused_sources_total{reason=\"certificate_mismatch\"} 1\n"),
            std::string::npos)
      << replica;
  EXPECT_EQ(replica.find("geosync_refused_acks_total"), std::string::npos);
}

}  // namespace
}  // namespace geosync
