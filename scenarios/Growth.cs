using System.Runtime.CompilerServices;

namespace DumpScope.Scenarios;

// One process dumped at two moments, as a user compares a dump with an
// earlier one of the same service: a shop's in-memory cache that grows.
// Stage 1 fills it. Stage 2 adds baskets and basket items, drops most price
// quotes and every voucher, and starts keeping refunds: every kind of change
// a per-type comparison shows (grown, shrunk, gone, new).

public sealed class Basket
{
    public long Id;
    public long CustomerId;
}

public sealed class BasketItem
{
    public long Id;
    public long BasketId;
    public decimal Price;
}

public sealed class PriceQuote
{
    public long Id;
    public double Amount;
}

public sealed class Voucher
{
    public long Id;
    public int Percent;
}

public sealed class Refund
{
    public long Id;
    public decimal Amount;
}

public static class ShopCache
{
    internal static readonly List<Basket> Baskets = new();
    internal static readonly List<BasketItem> Items = new();
    internal static readonly List<PriceQuote> Quotes = new();
    internal static readonly List<Voucher> Vouchers = new();
    internal static readonly List<Refund> Refunds = new();
}

internal static class Growth
{
    internal static Facts Plant(string[] args)
    {
        Add(ShopCache.Baskets, 2000, i => new Basket { Id = i, CustomerId = i % 97 });
        Add(ShopCache.Items, 8000, i => new BasketItem { Id = i, BasketId = i % 2000 });
        Add(ShopCache.Quotes, 6000, i => new PriceQuote { Id = i, Amount = i });
        Add(ShopCache.Vouchers, 1500, i => new Voucher { Id = i, Percent = 10 });
        return Settled();
    }

    /// <summary>Stage 2, once stage 1 is dumped.</summary>
    internal static Facts Grow()
    {
        Add(ShopCache.Baskets, 3000, i => new Basket { Id = i, CustomerId = i % 97 });
        Add(ShopCache.Items, 12000, i => new BasketItem { Id = i, BasketId = i % 5000 });
        ShopCache.Quotes.RemoveRange(0, 4000);
        ShopCache.Vouchers.Clear();
        Add(ShopCache.Refunds, 700, i => new Refund { Id = i, Amount = i });
        return Settled();
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Add<T>(List<T> list, int count, Func<long, T> make)
    {
        for (int i = 0; i < count; i++)
        {
            list.Add(make(list.Count));
        }
    }

    /// <summary>
    /// Collects what was dropped, so the dump holds exactly the cached
    /// objects, and says how many of each type it holds.
    /// </summary>
    private static Facts Settled()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        return new Facts
        {
            ["cache_owner_type"] = typeof(ShopCache).FullName,
            ["counts"] = new Dictionary<string, int>
            {
                [typeof(Basket).FullName!] = ShopCache.Baskets.Count,
                [typeof(BasketItem).FullName!] = ShopCache.Items.Count,
                [typeof(PriceQuote).FullName!] = ShopCache.Quotes.Count,
                [typeof(Voucher).FullName!] = ShopCache.Vouchers.Count,
                [typeof(Refund).FullName!] = ShopCache.Refunds.Count,
            },
        };
    }
}
