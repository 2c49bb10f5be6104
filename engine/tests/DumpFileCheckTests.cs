using DumpScope.Engine.Analysis;

namespace DumpScope.Engine.Tests;

public sealed class DumpFileCheckTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("dumpscope-check-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    // The first `length` bytes of a dump, as a file of its own.
    private string Cut(string dump, long length)
    {
        string path = Path.Combine(_dir, $"cut-{length}.core");
        using var from = File.OpenRead(dump);
        using var to = File.Create(path);
        byte[] buffer = new byte[1 << 20];
        for (long left = length; left > 0;)
        {
            int n = from.Read(buffer, 0, (int)Math.Min(buffer.Length, left));
            to.Write(buffer, 0, n);
            left -= n;
        }
        return path;
    }

    private static string Deadlock => ScenarioDumps.Get("deadlock", "net10").Dump;

    [Fact]
    public void A_whole_core_has_nothing_to_report()
    {
        var check = DumpFileCheck.Inspect(Deadlock, EngineLimits.Default.MaxProgramHeaders);
        Assert.Null(check.Refusal);
        Assert.Null(check.Damage);
    }

    [Fact]
    public void A_core_cut_in_half_is_named_truncated_with_what_is_missing()
    {
        long length = new FileInfo(Deadlock).Length;
        var check = DumpFileCheck.Inspect(Cut(Deadlock, length / 2), EngineLimits.Default.MaxProgramHeaders);
        Assert.Null(check.Refusal);
        Assert.Contains("truncated", check.Damage);
        Assert.Contains($"holds {length / 2} bytes", check.Damage);
    }

    [Theory]
    [InlineData(3, "too short")]
    [InlineData(40, "ELF header")]
    [InlineData(1000, "program headers")]
    [InlineData(5000, "program headers")]
    public void A_core_cut_inside_its_headers_is_refused_naming_where(long length, string where)
    {
        var check = DumpFileCheck.Inspect(Cut(Deadlock, length), EngineLimits.Default.MaxProgramHeaders);
        Assert.Contains(where, check.Refusal);
    }

    [Fact]
    public void A_file_that_is_no_dump_is_refused_naming_its_first_bytes()
    {
        string path = Path.Combine(_dir, "notes.txt");
        File.WriteAllText(path, "hello, not a dump");
        var check = DumpFileCheck.Inspect(path, EngineLimits.Default.MaxProgramHeaders);
        Assert.Contains("68656C6C", check.Refusal);
    }

    [Fact]
    public void A_hostile_program_header_count_is_refused_before_anything_is_allocated()
    {
        string path = Cut(Deadlock, 1 << 20);
        using (var file = new FileStream(path, FileMode.Open, FileAccess.Write))
        {
            file.Position = 56;
            file.Write([0xfe, 0xff]);
        }
        var check = DumpFileCheck.Inspect(path, 1000);
        Assert.Contains("65534 program headers", check.Refusal);
    }

    [Fact]
    public void A_truncated_minidump_is_named_truncated()
    {
        string dump = Path.Combine(ScenarioDumps.RepoRoot, "..", "shared", "data", "minidumps", "null_write_av.dmp");
        Assert.Null(DumpFileCheck.Inspect(dump, 1000).Damage);
        var check = DumpFileCheck.Inspect(Cut(dump, new FileInfo(dump).Length * 3 / 4), 1000);
        Assert.Null(check.Refusal);
        Assert.Contains("truncated", check.Damage);
    }
}
