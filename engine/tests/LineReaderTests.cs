using System.Text;
using DumpScope.Engine.Rpc;

namespace DumpScope.Engine.Tests;

public class LineReaderTests
{
    // A stream of `length` bytes of 'x' then "\n" and a short line, made as
    // it is read: the test itself holds none of it.
    private sealed class Flood(long length) : ReadOnlyStream
    {
        private readonly byte[] _tail = Encoding.UTF8.GetBytes("\nnext\n");
        private long _position;

        public override int Read(byte[] buffer, int offset, int count)
        {
            long total = length + _tail.Length;
            int n = (int)Math.Min(count, total - _position);
            for (int i = 0; i < n; i++, _position++)
                buffer[offset + i] = _position < length ? (byte)'x' : _tail[_position - length];
            return n;
        }
    }

    [Fact]
    public void A_256_MiB_line_is_measured_and_dropped_while_it_is_read()
    {
        var reader = new LineReader(new Flood(256L << 20), 1 << 20);
        long before = GC.GetAllocatedBytesForCurrentThread();
        InputLine line = reader.ReadLine()!.Value;
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(line.TooLong);
        Assert.Equal(256L << 20, line.Length);
        Assert.True(allocated < 8 << 20, $"{allocated} bytes allocated to read past a 256 MiB line");
        Assert.Equal("next", Encoding.UTF8.GetString(reader.ReadLine()!.Value.Bytes!));
        Assert.Null(reader.ReadLine());
    }

    [Fact]
    public void Lines_end_at_newline_with_crlf_trimmed_and_a_last_line_without_newline_kept()
    {
        var reader = new LineReader(new MemoryStream(Encoding.UTF8.GetBytes("a\r\n\nbc")), 16);
        Assert.Equal("a", Encoding.UTF8.GetString(reader.ReadLine()!.Value.Bytes!));
        Assert.Empty(reader.ReadLine()!.Value.Bytes!);
        Assert.Equal("bc", Encoding.UTF8.GetString(reader.ReadLine()!.Value.Bytes!));
        Assert.Null(reader.ReadLine());
    }

    [Fact]
    public void A_line_of_exactly_the_limit_is_kept()
    {
        var reader = new LineReader(new MemoryStream(Encoding.UTF8.GetBytes("abcd\nabcde\n")), 4);
        Assert.Equal("abcd", Encoding.UTF8.GetString(reader.ReadLine()!.Value.Bytes!));
        var second = reader.ReadLine()!.Value;
        Assert.True(second.TooLong);
        Assert.Equal(5, second.Length);
    }
}
