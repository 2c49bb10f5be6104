using DumpScope.Engine.Analysis;
using Microsoft.Diagnostics.Runtime;

namespace DumpScope.Engine.Tests;

public class HeapWalkerTests
{
    private struct Collect() : IObjectVisitor
    {
        public readonly List<(ulong Address, ulong Mt, ulong Size)> Objects = [];

        public void Visit(ulong address, ulong methodTable, ClrType type, ulong size) =>
            Objects.Add((address, methodTable, size));
    }

    // The walker replaces ClrMD's enumeration for speed; it must find the
    // very same objects, with the same sizes, segment by segment.
    [Theory]
    [InlineData("blocked-finalizer", "net10")]
    [InlineData("loh-fragmentation", "net10")]
    [InlineData("threadpool-starvation", "net10")]
    [InlineData("event-leak", "net8")]
    [InlineData("healthy", "net8")]
    public void The_walker_finds_exactly_the_objects_ClrMD_enumerates(string scenario, string runtime)
    {
        var (dump, runtimeDir) = ScenarioDumps.Get(scenario, runtime);
        using var target = DataTarget.LoadDump(dump, new DataTargetOptions { SymbolPaths = [], UseLockFreeMemoryMapReader = true });
        using var clr = target.ClrVersions[0].CreateRuntime(Path.Combine(runtimeDir, "libmscordaccore.so"), ignoreMismatch: true);
        var walker = new HeapWalker(clr, target.DataReader);
        foreach (ClrSegment segment in clr.Heap.Segments)
        {
            var visitor = new Collect();
            long count = walker.Walk(segment, ref visitor, CancellationToken.None);
            var expected = segment.EnumerateObjects(carefully: false)
                .Select(o => (o.Address, o.Type!.MethodTable, o.Size))
                .ToList();
            Assert.Equal(expected.Count, count);
            Assert.Equal(expected, visitor.Objects);
        }
    }
}
