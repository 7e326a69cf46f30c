using System;
using System.Text.RegularExpressions;
using Xunit;

namespace Metaparticle.Sync.Tests
{
    /// <summary>Bad input and unreachable sidecars give clear exceptions.</summary>
    public sealed class ErrorTests
    {
        [Theory]
        [InlineData("Bad_Name")]
        [InlineData("UPPER")]
        [InlineData("-leading-dash")]
        [InlineData("")]
        public void BadLockNameIsInvalidArgument(string name)
        {
            var e = Assert.Throws<MetaparticleException>(() => new Lock(name));
            Assert.Equal(ErrorCode.InvalidArgument, e.Code);
            Assert.False(string.IsNullOrWhiteSpace(e.Message));
        }

        [Fact]
        public void BadNameMessageNamesTheProblem()
        {
            var e = Assert.Throws<MetaparticleException>(() => new Lock("Bad_Name"));
            Assert.Contains("Bad_Name", e.Message);
        }

        [Fact]
        public void TooLongNameIsInvalidArgument()
        {
            var e = Assert.Throws<MetaparticleException>(() => new Lock(new string('a', 254)));
            Assert.Equal(ErrorCode.InvalidArgument, e.Code);
        }

        [Fact]
        public void BadElectionNameIsInvalidArgument()
        {
            var e = Assert.Throws<MetaparticleException>(() => new Election("Not A Name", () => { }, () => { }));
            Assert.Equal(ErrorCode.InvalidArgument, e.Code);
        }

        [Fact]
        public void NullNameIsArgumentNull()
        {
            Assert.Throws<ArgumentNullException>(() => new Lock(null!));
            Assert.Throws<ArgumentNullException>(() => new Election(null!, null, null));
        }

        [Fact]
        public void TtlOutOfTheLibrarysRangeIsInvalidArgument()
        {
            var e = Assert.Throws<MetaparticleException>(() => new Lock("ttl", new LockOptions { Ttl = TimeSpan.FromSeconds(1) }));
            Assert.Equal(ErrorCode.InvalidArgument, e.Code);
            Assert.Contains("ttl", e.Message, StringComparison.OrdinalIgnoreCase);
            var e2 = Assert.Throws<MetaparticleException>(() => new Election("ttl", null, null, new ElectionOptions { Ttl = TimeSpan.FromHours(2) }));
            Assert.Equal(ErrorCode.InvalidArgument, e2.Code);
        }

        [Fact]
        public void TtlThatIsNotWholeSecondsIsRejected()
        {
            Assert.Throws<ArgumentOutOfRangeException>(() => new Lock("ttl", new LockOptions { Ttl = TimeSpan.FromMilliseconds(3500) }));
            Assert.Throws<ArgumentOutOfRangeException>(() => new Lock("ttl", new LockOptions { Ttl = TimeSpan.FromSeconds(-5) }));
        }

        [Fact]
        public void BadTimeoutIsRejected()
        {
            using var l = new Lock("timeout", TestUtil.UnusedLocalUrl());
            Assert.Throws<ArgumentOutOfRangeException>(() => l.WaitOne(-2));
            Assert.Throws<ArgumentOutOfRangeException>(() => l.WaitOne(TimeSpan.FromMilliseconds(-5)));
        }

        [Fact]
        public void UnreachableSidecarIsReportedWithItsAddress()
        {
            string url = TestUtil.UnusedLocalUrl();
            using var l = new Lock(TestUtil.UniqueName("unreachable"), url);
            var e = Assert.Throws<SidecarUnreachableException>(() => l.WaitOne());
            Assert.Equal(ErrorCode.SidecarUnreachable, e.Code);
            Assert.Contains(new Uri(url).Authority, e.Message);
            Assert.False(l.IsHeld);

            var e2 = Assert.Throws<SidecarUnreachableException>(() => l.TryWait());
            Assert.Contains(new Uri(url).Authority, e2.Message);
        }

        [Fact]
        public void UnreachableSidecarFailsElectionLeaderQuery()
        {
            string url = TestUtil.UnusedLocalUrl();
            using var election = new Election(TestUtil.UniqueName("unreachable"), url, null, null);
            var e = Assert.Throws<SidecarUnreachableException>(() => election.Leader);
            Assert.Contains(new Uri(url).Authority, e.Message);
        }

        [Fact]
        public void NativeLibraryReportsVersionAndErrorNames()
        {
            Assert.Matches(new Regex(@"^\d+\.\d+\.\d+"), MetaparticleLibrary.NativeVersion);
            Assert.Equal("MP_ETIMEOUT", MetaparticleLibrary.ErrorName(ErrorCode.Timeout));
            Assert.Equal("MP_EINVAL", MetaparticleLibrary.ErrorName(ErrorCode.InvalidArgument));
        }
    }
}
