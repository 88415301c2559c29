#include "qcfs/fuse/mount_options.h"

#include <unistd.h>

#include <gtest/gtest.h>

namespace qcfs {
namespace {

TEST(MountOptions, QcfsOptionsSetTheVolume) {
  MountConfig c;
  ASSERT_TRUE(ParseMountOptions({"ro,noatime,compression=zstd:5", "cache_size=64M,nodiscard,flush_interval=2"}, &c).ok());
  EXPECT_TRUE(c.volume.read_only);
  EXPECT_EQ(c.volume.atime, AtimeMode::kNoatime);
  EXPECT_EQ(c.volume.compression->ToString(), "zstd:5");
  EXPECT_EQ(c.volume.cache_bytes, 64u << 20);
  EXPECT_FALSE(c.volume.store.discard);
  EXPECT_EQ(c.volume.flush_interval_ms, 2000u);
}

TEST(MountOptions, GenericOptionsOfMountAndFstabAreAccepted) {
  MountConfig c;
  ASSERT_TRUE(ParseMountOptions({"rw,nosuid,nodev,exec,defaults,auto,nofail,_netdev,x-systemd.automount,user"}, &c).ok());
  EXPECT_FALSE(c.volume.read_only);
  EXPECT_EQ(c.fuse_options, (std::vector<std::string>{"nosuid", "nodev", "exec"}));
}

TEST(MountOptions, UnknownOrMalformedOptionsAreClearErrors) {
  MountConfig c;
  Status s = ParseMountOptions({"noatime,frobnicate"}, &c);
  EXPECT_EQ(s.code(), EINVAL);
  EXPECT_NE(s.message().find("frobnicate"), std::string::npos);
  EXPECT_FALSE(ParseMountOptions({"compression=gzip"}, &c).ok());
  EXPECT_FALSE(ParseMountOptions({"cache_size=1K"}, &c).ok());
  EXPECT_FALSE(ParseMountOptions({"cache_size"}, &c).ok());
  EXPECT_FALSE(ParseMountOptions({"dirty_limit=sometimes"}, &c).ok());
}

TEST(MountOptions, DefaultPermissionsIsKeptWhenAsked) {
  MountConfig c;
  EXPECT_FALSE(c.default_permissions);
  ASSERT_TRUE(ParseMountOptions({"default_permissions"}, &c).ok());
  EXPECT_TRUE(c.default_permissions);
}

TEST(MountOptions, OthersMayEnterWhenRootMountsUnlessPrivate) {
  MountConfig c;
  EXPECT_FALSE(c.allow_other.has_value());
  EXPECT_EQ(AllowsOthers(c), ::geteuid() == 0);
  EXPECT_TRUE(KernelChecksPermissions(c));  // shared when root, a non-root owner otherwise
  ASSERT_TRUE(ParseMountOptions({"private"}, &c).ok());
  EXPECT_FALSE(AllowsOthers(c));
  EXPECT_EQ(KernelChecksPermissions(c), ::geteuid() != 0);
  ASSERT_TRUE(ParseMountOptions({"private,default_permissions"}, &c).ok());
  EXPECT_TRUE(KernelChecksPermissions(c));
  ASSERT_TRUE(ParseMountOptions({"allow_other"}, &c).ok());
  EXPECT_TRUE(AllowsOthers(c));
  ASSERT_TRUE(ParseMountOptions({"allow_other,private"}, &c).ok());  // the later one wins
  EXPECT_FALSE(AllowsOthers(c));
}

TEST(MountOptions, DirtyLimitIsAdaptiveUnlessChosen) {
  MountConfig c;
  EXPECT_EQ(c.dirty_limit, MountConfig::DirtyLimit::kAdaptive);
  ASSERT_TRUE(ParseMountOptions({"dirty_limit=system"}, &c).ok());
  EXPECT_EQ(c.dirty_limit, MountConfig::DirtyLimit::kSystem);
  ASSERT_TRUE(ParseMountOptions({"dirty_limit=fuse"}, &c).ok());
  EXPECT_EQ(c.dirty_limit, MountConfig::DirtyLimit::kFuse);
  ASSERT_TRUE(ParseMountOptions({"dirty_limit=adaptive"}, &c).ok());
  EXPECT_EQ(c.dirty_limit, MountConfig::DirtyLimit::kAdaptive);
}

TEST(MountOptions, ReadaheadIsAMebibyteUnlessChosen) {
  MountConfig c;
  EXPECT_EQ(c.readahead_bytes, 1u << 20);
  ASSERT_TRUE(ParseMountOptions({"readahead=4M"}, &c).ok());
  EXPECT_EQ(c.readahead_bytes, 4u << 20);
  ASSERT_TRUE(ParseMountOptions({"readahead=0"}, &c).ok());
  EXPECT_EQ(c.readahead_bytes, 0u);
  EXPECT_EQ(ParseMountOptions({"readahead=65M"}, &c).code(), EINVAL);
  EXPECT_EQ(ParseMountOptions({"readahead"}, &c).code(), EINVAL);
  EXPECT_EQ(ParseMountOptions({"readahead=lots"}, &c).code(), EINVAL);
}

}  // namespace
}  // namespace qcfs
