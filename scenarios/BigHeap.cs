using System.Runtime.CompilerServices;

namespace DumpScope.Scenarios.Model
{
    // A plain business object graph, for heap-walk speed and type statistics.
    public sealed class Customer
    {
        public long Id;
        public Address? Home;
    }

    public sealed class Address
    {
        public int Zip;
        public int Street;
    }

    public sealed class Product
    {
        public long Sku;
        public decimal Price;
    }

    public sealed class Order
    {
        public long Id;
        public Customer? Customer;
    }

    public sealed class OrderLine
    {
        public Order? Order;
        public Product? Product;
        public int Quantity;
    }

    public sealed class Invoice
    {
        public Order? Order;
        public decimal Total;
    }

    public sealed class Payment
    {
        public Invoice? Invoice;
        public long Cents;
    }

    public sealed class Shipment
    {
        public Order? Order;
        public Address? Destination;
        public DateTime Sent;
    }
}

namespace DumpScope.Scenarios
{
    using DumpScope.Scenarios.Model;

    internal static class BigHeap
    {
        private const int ChunkLength = 1 << 16;
        private static object[][] s_roots = Array.Empty<object[]>();

        internal static Facts Plant(string[] args)
        {
            long objects = Args.Long(args, "--objects", 1_000_000);
            var counts = Build(objects);
            GC.Collect();
            return new Facts
            {
                ["objects"] = objects,
                ["type_counts"] = counts,
                ["root_chunks"] = s_roots.Length,
                ["root_chunk_type"] = typeof(object[]).FullName,
            };
        }

        [MethodImpl(MethodImplOptions.NoInlining)]
        private static Dictionary<string, long> Build(long objects)
        {
            var chunks = new object[(objects + ChunkLength - 1) / ChunkLength][];
            var counts = new long[8];
            // Each group of eight creates the referenced objects first, so every
            // reference points at a counted object of the same group.
            Address? address = null;
            Customer? customer = null;
            Product? product = null;
            Order? order = null;
            Invoice? invoice = null;
            for (long i = 0; i < objects; i++)
            {
                int kind = (int)(i % 8);
                object item = kind switch
                {
                    0 => address = new Address { Zip = (int)(i % 100_000), Street = (int)i },
                    1 => customer = new Customer { Id = i, Home = address },
                    2 => product = new Product { Sku = i, Price = i % 1000 },
                    3 => order = new Order { Id = i, Customer = customer },
                    4 => new OrderLine { Order = order, Product = product, Quantity = (int)(i % 7) },
                    5 => invoice = new Invoice { Order = order, Total = i % 5000 },
                    6 => new Payment { Invoice = invoice, Cents = i },
                    _ => new Shipment { Order = order, Destination = address, Sent = DateTime.UnixEpoch },
                };
                counts[kind]++;
                long chunk = i / ChunkLength;
                chunks[chunk] ??= new object[Math.Min(ChunkLength, objects - chunk * ChunkLength)];
                chunks[chunk][i % ChunkLength] = item;
            }
            s_roots = chunks;
            Type[] kinds =
            {
                typeof(Address), typeof(Customer), typeof(Product), typeof(Order),
                typeof(OrderLine), typeof(Invoice), typeof(Payment), typeof(Shipment),
            };
            return kinds.Select((t, k) => (t.FullName!, counts[k])).ToDictionary(p => p.Item1, p => p.Item2);
        }
    }
}
