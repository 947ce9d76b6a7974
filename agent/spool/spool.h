// The durable spool that the source and every replica keep: committed
// transactions as runs of opaque records, fsynced at each group commit,
// streamed to sites from any retained position, and released once every site
// has acknowledged them. Byte layout: agent/spool/segment.h, docs/spool.md.
//
// Threading: Append() and Sync() are called from one writer thread.
// ReleaseUpTo(), ReadFrom() and the accessors may be called from any thread.
// A SpoolReader is used by one thread at a time and may outlive its Spool.
// Shared state (segment list, durable position, released floor, sizes) sits
// behind one mutex; file I/O is done outside it.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "agent/spool/segment.h"
#include "common/config.h"
#include "common/lsn.h"
#include "common/status.h"

namespace geosync {

struct SpoolOptions {
  std::string dir;
  // A new segment is started at the first unit boundary after the active one
  // reaches this size.
  uint64_t segment_bytes = 64ull << 20;
  // When the spool holds this many bytes, Append() refuses to start a new
  // unit (Status::Io, retryable) until ReleaseUpTo() frees space. 0 = no cap.
  // A unit already started is always finished, so the cap may be overshot by
  // one unit.
  uint64_t max_bytes = 0;
  // spool.dir, spool.segment_mb and spool.max_mb.
  static SpoolOptions FromConfig(const Config& config);
};

namespace spool_internal {
struct Shared;
}

// Streams the records of complete, fsynced units to one site.
class SpoolReader {
 public:
  ~SpoolReader();
  SpoolReader(const SpoolReader&) = delete;
  SpoolReader& operator=(const SpoolReader&) = delete;

  // The next record, or nullopt at the current durable end: call again later
  // (after the writer's next Sync()) for more. NotFound when the segment the
  // reader needs next was released under it (the site must be re-seeded);
  // Corruption when a record fails its checksum, naming file and offset.
  Result<std::optional<SpoolRecord>> Next();

 private:
  friend class Spool;
  SpoolReader(std::shared_ptr<spool_internal::Shared> shared, Position after, uint64_t next_id,
              uint64_t start_offset);

  // Opens segment next_id_ if it exists; NotFound if it was released.
  Status OpenNext(bool* opened);
  // How far the open segment may be read, and whether it is sealed.
  Status Limit(uint64_t* limit, bool* sealed);

  std::shared_ptr<spool_internal::Shared> shared_;
  Position after_;         // records at or before this position are skipped
  uint64_t next_id_;       // the segment being read, or to be opened next
  uint64_t start_offset_;  // where to start reading in segment next_id_
  UniqueFd fd_;
  std::unique_ptr<SegmentReader> reader_;
};

class Spool {
 public:
  // Creates the directory if needed, takes an exclusive lock on it, checks
  // every segment and cuts a torn tail of the last one (a partial record, a
  // bad checksum, or records after its last complete unit), logging what was
  // cut. A bad record anywhere else is Corruption naming file and offset.
  // Reads the whole spool once, sequentially.
  static Result<std::unique_ptr<Spool>> Open(SpoolOptions options);
  // Discards what was appended since the last Sync(), like a crash would: a
  // clean shutdown calls Sync() first.
  ~Spool();
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  // Buffers one record. flags: kFirstInUnit on the first record of a unit,
  // kLastInUnit on its last, kStandalone on a one-record unit. All records of
  // a unit carry the same (epoch, lsn). InvalidArgument when the lsn goes
  // backwards within an epoch or the flags break the unit structure; Fenced
  // when the epoch goes backwards. After an I/O failure every write call
  // returns that failure: reopen the spool.
  Status Append(uint64_t epoch, Lsn lsn, uint8_t flags, std::span<const uint8_t> payload);
  // Group commit: writes what is buffered, fdatasyncs the active segment (and
  // the directory after a segment was created), then makes every complete
  // unit so far durable and visible to readers.
  Status Sync();

  // Drops the records of the unit that is open (started, not finished), so
  // that it can be appended again from its start after a broken upstream
  // connection. OK and nothing done when no unit is open. Readers never saw
  // those records: they only read complete units.
  Status AbandonIncompleteUnit();

  // (epoch, lsn) of the last complete unit that is fsynced; after a release of
  // everything on an empty spool, the released floor.
  Position durable() const;
  // Position of the last record appended, synced or not.
  Position last_appended() const;
  // Bytes in all segments, including appended bytes not yet written.
  uint64_t size_bytes() const;
  // Position of the first retained record; Position{} when there is none.
  Position oldest() const;
  // Every unit at or before this position may have been deleted; everything
  // after it is retained. Position{} until the first release. Persisted.
  Position released() const;

  // A reader of the units whose position is strictly after `after`: a site
  // that durably holds the unit at (e, L) asks ReadFrom({e, L}) and gets the
  // next one. NotFound, naming both positions, when after < released(): units
  // the site lacks are gone and it needs a re-seed.
  Result<std::unique_ptr<SpoolReader>> ReadFrom(Position after);

  // After a write or fsync failed (a full disk): cuts the active segment back
  // to its last durable unit, reopens it and clears the failure, so that
  // appending can go on from durable() once the disk has room. Readers never
  // saw what is cut (they read durable units only). OK and nothing done when
  // nothing failed; when the disk still refuses, the error, and the spool
  // stays failed. Writer thread.
  Status ReopenWriter();
  bool failed() const { return !failed_.ok(); }
  // The failure that stopped appending, "" while appending works. Any thread
  // (status pages): "spool disk full: ..." for ENOSPC.
  std::string write_error() const;

  // Deletes whole segments all of whose units are at or before `upto` (every
  // site has acknowledged them), oldest first, and stops once the spool
  // holds no more than `keep_bytes` (0: release all it may). Never deletes
  // the active (last) segment.
  Status ReleaseUpTo(Position upto, uint64_t keep_bytes = 0);
  // Bytes that ReleaseUpTo(upto) would delete now.
  uint64_t ReleasableBytes(Position upto) const;

  // Seeding: deletes every segment and makes `floor` the release floor and
  // the durable position, persisted, so that the site next asks for the units
  // after `floor`. Writer thread, with no reader open.
  Status ResetTo(Position floor);

 private:
  Spool(SpoolOptions options, std::shared_ptr<spool_internal::Shared> shared);

  Status CheckAppend(Position pos, uint8_t flags, size_t payload_size) const;
  // Syncs and seals the active segment; the next Append creates a new one.
  Status Rotate();
  Status CreateSegment(Position first);
  Status Write(std::span<const uint8_t> bytes);
  Status FlushBuffer();
  Status Fail(Status status);

  SpoolOptions options_;
  std::shared_ptr<spool_internal::Shared> shared_;
  std::mutex release_mu_;  // serializes ReleaseUpTo()

  // Writer-thread state.
  Status failed_;  // sticky after an I/O failure
  mutable std::mutex error_mu_;
  std::string write_error_;   // failed_ for other threads, under error_mu_
  UniqueFd fd_;               // active segment, opened for append
  UniqueFd lock_fd_;          // holds the directory lock (flock)
  Position active_first_;     // name of the active segment
  uint64_t active_size_ = 0;  // bytes in the active segment, buffered ones included
  uint64_t unit_end_ = 0;     // end of the last complete unit in the active segment
  Position last_unit_;        // position of the last complete unit appended
  Position last_appended_;
  bool unit_open_ = false;  // between a kFirstInUnit record and its kLastInUnit
  Position unit_pos_;       // position of the open unit
  bool dir_dirty_ = false;  // a segment was created since the last directory fsync
  std::vector<uint8_t> buf_;
};

}  // namespace geosync
