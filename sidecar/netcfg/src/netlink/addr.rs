//! IPv4 addresses on a link (and the family-neutral requests `inet6` shares).

use std::net::IpAddr;
use std::net::Ipv4Addr;

use futures::TryStreamExt;
use ipnet::{IpNet, Ipv4Net};
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use rtnetlink::AddressMessageBuilder;

use super::{tolerate, Netlink};
use crate::error::Result;

impl Netlink {
    /// `ip addr add ADDR/LEN dev IDX`; Ok if the address is already there.
    pub async fn add_address(&self, index: u32, addr: Ipv4Net) -> Result<()> {
        self.add_address_with(index, IpNet::V4(addr), None).await
    }

    /// `ip addr del ADDR/LEN dev IDX`; Ok if the address is not there.
    pub async fn del_address(&self, index: u32, addr: Ipv4Net) -> Result<()> {
        let msg = AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(addr.addr(), addr.prefix_len())
            .build();
        self.del_address_message(index, msg, IpNet::V4(addr)).await
    }

    /// `ip -4 addr show dev IDX`: the IPv4 addresses with their prefix lengths.
    pub async fn addresses(&self, index: u32) -> Result<Vec<Ipv4Net>> {
        let msgs = self.address_messages(index).await?;
        Ok(msgs.iter().filter_map(ipv4_of).collect())
    }

    /// Adds an address of either family with optional `IFA_F_*` flags; Ok if it exists.
    pub(super) async fn add_address_with(
        &self,
        index: u32,
        addr: IpNet,
        flags: Option<AddressFlags>,
    ) -> Result<()> {
        let mut req = self
            .handle
            .address()
            .add(index, addr.addr(), addr.prefix_len());
        if let Some(flags) = flags {
            req.message_mut()
                .attributes
                .push(AddressAttribute::Flags(flags));
        }
        tolerate(req.execute().await, &[libc::EEXIST])
            .map_err(|e| self.error("address add", format!("{addr} on link {index}"), e))
    }

    pub(super) async fn del_address_message(
        &self,
        index: u32,
        msg: AddressMessage,
        addr: IpNet,
    ) -> Result<()> {
        let result = self.handle.address().del(msg).execute().await;
        // EADDRNOTAVAIL: no such address; ENODEV: the link itself is gone.
        tolerate(result, &[libc::EADDRNOTAVAIL, libc::ENODEV])
            .map_err(|e| self.error("address del", format!("{addr} on link {index}"), e))
    }

    /// Every address message of link `index`, both families.
    pub(super) async fn address_messages(&self, index: u32) -> Result<Vec<AddressMessage>> {
        let msgs: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(|e| self.error("address dump", format!("link {index}"), e))?;
        // The filter is applied in user space by rtnetlink; re-check the index anyway.
        Ok(msgs
            .into_iter()
            .filter(|m| m.header.index == index)
            .collect())
    }

    /// `ip -4 addr flush dev IDX`: remove every IPv4 address from the link.
    pub async fn flush_addresses(&self, index: u32) -> Result<()> {
        for addr in self.addresses(index).await? {
            self.del_address(index, addr).await?;
        }
        Ok(())
    }
}

/// The IFA_LOCAL (falling back to IFA_ADDRESS) of an IPv4 address message.
fn ipv4_of(msg: &AddressMessage) -> Option<Ipv4Net> {
    let mut address = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(IpAddr::V4(a)) => {
                return Ipv4Net::new(*a, msg.header.prefix_len).ok()
            }
            AddressAttribute::Address(IpAddr::V4(a)) => address = Some(*a),
            _ => {}
        }
    }
    address.and_then(|a| Ipv4Net::new(a, msg.header.prefix_len).ok())
}
